"""Every quickstart of the README runs as written against the simulated APIs.

A runnable block is a ```sh block right after a ``<!-- quickstart: PROVIDER JOB -->``
line. It runs in bash (``-euo pipefail``) in an empty directory, with what the text
before it tells the user to set: the provider's credentials, here the simulator's, and
its API's address through the provider's own variable (``OPENAI_BASE_URL``,
``CO_API_URL``, ``AWS_ENDPOINT_URL_BEDROCK``), which is how a proxy or private
deployment is reached too. JOB is the block's example job, finished in the simulator
(its id put in place of the example's where the provider makes its own ids).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ftwatch.sim import fireworks as fireworks_sim
from ftwatch.sim import vertex as vertex_sim

from .providers import LIFECYCLES, world

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- quickstart: (\w+) (\S+) -->\n```sh\n(.*?)\n```", re.DOTALL)
#: How each quickstart's text tells the user to reach another address of the API: its
#: variable, written as the provider's own SDK writes it (OpenAI's and Together's
#: with /v1), or the ``base_url`` line the block itself has.
_URL_VARIABLE = {
    "openai": ("OPENAI_BASE_URL", "/v1"),
    "azure_openai": ("AZURE_OPENAI_ENDPOINT", ""),
    "cohere": ("CO_API_URL", ""),
    "bedrock": ("AWS_ENDPOINT_URL_BEDROCK", ""),
    "together": ("TOGETHER_BASE_URL", "/v1"),
    "fireworks": ("", ""),
    "vertex": ("", ""),
}
#: The URL a block names as its default, where the API's variable is no convention.
_DEFAULT_URL = {
    "fireworks": "https://api.fireworks.ai",
    "vertex": "https://us-central1-aiplatform.googleapis.com",
}
QUICKSTARTS = {provider: (job, block) for provider, job, block in _BLOCK.findall(README.read_text())}


def test_every_provider_has_a_runnable_quickstart() -> None:
    assert sorted(QUICKSTARTS) == sorted(_URL_VARIABLE)


@pytest.mark.parametrize("provider", sorted(QUICKSTARTS))
def test_the_quickstart_runs_as_written(provider: str, quiet_env: dict[str, str], tmp_path: Path) -> None:
    example_job, block = QUICKSTARTS[provider]
    with world(provider) as api:
        job = api.add(example_job, LIFECYCLES[provider][-1])
        api.add("another", LIFECYCLES[provider][0])
        variable, tail = _URL_VARIABLE[provider]
        env = quiet_env | api.credentials(tmp_path)
        if variable:
            env[variable] = api.server.url + tail
        else:
            block = block.replace(f'"{_DEFAULT_URL[provider]}"', f'"{api.server.url}"')
        if provider == "fireworks":
            env["FIREWORKS_ACCOUNT_ID"] = fireworks_sim.ACCOUNT
        # The user's own project, here the simulator's.
        block = block.replace('project = "my-project"', f'project = "{vertex_sim.PROJECT}"')
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.replace(example_job, job)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert job in done.stdout  # `ftwatch models` listed it, `wait` told it is ready
    assert "Traceback" not in done.stderr


def test_the_receivers_check_in_the_webhook_page_verifies_what_ftwatch_signs() -> None:
    """docs/webhook.md's `verify`, run as printed: ftwatch's signature passes, a
    tampered body or an old timestamp does not."""
    import time  # noqa: PLC0415

    from ftwatch.standard_webhooks import sign  # noqa: PLC0415

    page = (README.parent / "docs" / "webhook.md").read_text()
    [code] = re.findall(r"```python\n(.*?)\n```", page, re.DOTALL)
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/webhook.md", "exec"), namespace)
    verify = namespace["verify"]
    assert callable(verify)
    secret, body, now = "whsec_" + "c2VjcmV0LWtleS1vZi10aGUtcmVjZWl2ZXI=", b'{"id":"ftw_1"}', int(time.time())
    headers = {
        "webhook-id": "ftw_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, "ftw_1", now, body),
    }
    verify(secret, headers, body)
    with pytest.raises(ValueError, match="bad signature"):
        verify(secret, headers, body + b" ")
    with pytest.raises(ValueError, match="timestamp"):
        verify(secret, headers | {"webhook-timestamp": str(now - 3600)}, body)
