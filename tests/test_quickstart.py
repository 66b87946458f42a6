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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ftwatch.sim import fireworks as fireworks_sim
from ftwatch.sim import vertex as vertex_sim
from ftwatch.standard_webhooks import sign

from .providers import LIFECYCLES, world

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- quickstart: (\w+) (\S+) -->\n```sh\n(.*?)\n```", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Aim:
    """How the text before a quickstart tells its reader to point it at another address
    of the API (a proxy, a private deployment), here the simulator's."""

    #: The variable the provider's own SDK reads, and what its URL has after the host
    #: (OpenAI's and Together's ``/v1``).
    variable: str = ""
    tail: str = ""
    #: Where the API has no such variable: the URL the block itself writes.
    default_url: str = ""
    #: What else the text asks the reader to set, or to write in the block.
    env: Mapping[str, str] = field(default_factory=dict)
    edits: Mapping[str, str] = field(default_factory=dict)

    def aimed(self, block: str, env: dict[str, str], url: str) -> str:
        """``block`` pointed at ``url`` (``env`` gains what the reader sets)."""
        env.update(self.env)
        if self.variable:
            env[self.variable] = url + self.tail
        else:
            block = block.replace(f'"{self.default_url}"', f'"{url}"')
        for written, own in self.edits.items():
            block = block.replace(written, own)
        return block


_AIMS = {
    "openai": Aim(variable="OPENAI_BASE_URL", tail="/v1"),
    "azure_openai": Aim(variable="AZURE_OPENAI_ENDPOINT"),
    "cohere": Aim(variable="CO_API_URL"),
    "bedrock": Aim(variable="AWS_ENDPOINT_URL_BEDROCK"),
    "together": Aim(variable="TOGETHER_BASE_URL", tail="/v1"),
    "fireworks": Aim(default_url="https://api.fireworks.ai", env={"FIREWORKS_ACCOUNT_ID": fireworks_sim.ACCOUNT}),
    # The reader's own project, here the simulator's.
    "vertex": Aim(
        default_url="https://us-central1-aiplatform.googleapis.com",
        edits={'project = "my-project"': f'project = "{vertex_sim.PROJECT}"'},
    ),
}
QUICKSTARTS = {provider: (job, block) for provider, job, block in _BLOCK.findall(README.read_text())}


def test_every_provider_has_a_runnable_quickstart() -> None:
    assert sorted(QUICKSTARTS) == sorted(_AIMS)


@pytest.mark.parametrize("provider", sorted(QUICKSTARTS))
def test_the_quickstart_runs_as_written(provider: str, quiet_env: dict[str, str], tmp_path: Path) -> None:
    example_job, block = QUICKSTARTS[provider]
    with world(provider) as api:
        job = api.add(example_job, LIFECYCLES[provider][-1])
        api.add("another", LIFECYCLES[provider][0])
        env = quiet_env | api.credentials(tmp_path)
        block = _AIMS[provider].aimed(block, env, api.server.url)
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
