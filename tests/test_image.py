"""The container image as far as this machine can build it: no container engine runs
here and no base image can be pulled, so the Dockerfile's install steps run as written
in a clean virtualenv (from a build context holding only what the Dockerfile copies),
and its entrypoint runs with each shipped ConfigMap against the simulators."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ftwatch.sim import fireworks as fireworks_sim
from ftwatch.sim import vertex as vertex_sim

from .conftest import run_cli
from .providers import LIFECYCLES, world
from .receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
KUSTOMIZE = ROOT / "deploy" / "kustomize"
#: Each provider's ConfigMap content: OpenAI's is the default, the others are components.
CONFIGMAPS = {
    "openai": KUSTOMIZE / "config" / "ftwatch.toml",
    "cohere": KUSTOMIZE / "components" / "cohere" / "ftwatch.toml",
    "bedrock": KUSTOMIZE / "components" / "bedrock" / "ftwatch.toml",
    "together": KUSTOMIZE / "components" / "together" / "ftwatch.toml",
    "fireworks": KUSTOMIZE / "components" / "fireworks" / "ftwatch.toml",
    "azure_openai": KUSTOMIZE / "components" / "azure_openai" / "ftwatch.toml",
    "vertex": KUSTOMIZE / "components" / "vertex" / "ftwatch.toml",
}


def _build_steps() -> tuple[list[str], str]:
    """What the build stage copies into its context, and the extras it installs."""
    text = DOCKERFILE.read_text()
    build = text.split("\nFROM ", 2)[1]  # the first stage: FROM … AS build
    copied = [part for line in re.findall(r"^COPY (.+)$", build, re.MULTILINE) for part in line.split()[:-1]]
    [extras] = re.findall(r"^ARG EXTRAS=(\S*)$", build, re.MULTILINE)
    assert '/opt/ftwatch/bin/pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"' in build
    return copied, extras


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/ftwatch as the build stage makes it: a venv, pip upgraded, ftwatch with the
    default extras installed (not editable) from a context of only the copied files."""
    copied, extras = _build_steps()
    where = tmp_path_factory.mktemp("image")
    context = where / "src"
    context.mkdir()
    for name in copied:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    venv = where / "opt-ftwatch"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir"]
    for step in (["--upgrade", "pip"], [f".[{extras}]"]):
        done = subprocess.run([*pip, *step], cwd=context, capture_output=True, text=True, check=False, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    return venv


def _configmap_here(provider: str, url: str, secrets: Path, state: Path) -> str:
    """The shipped ConfigMap with its mount paths on this machine and the source
    pointed at the simulator (the one key a real cluster does not need)."""
    text = CONFIGMAPS[provider].read_text()
    text = text.replace("/var/run/secrets/ftwatch/", f"{secrets}/").replace("/var/lib/ftwatch/", f"{state}/")
    # The account and the resource are the user's to name: here the simulator's.
    text = text.replace('account = "my-account"', f'account = "{fireworks_sim.ACCOUNT}"')
    text = text.replace('endpoint = "https://my-resource.openai.azure.com"', f'endpoint = "{url}"')
    text = text.replace('project = "my-project"', f'project = "{vertex_sim.PROJECT}"')
    if provider == "azure_openai":
        return text
    url_key = "endpoint_url" if provider in ("bedrock", "vertex") else "base_url"
    return text.replace(f'type = "{provider}"\n', f'type = "{provider}"\n{url_key} = "{url}"\n', 1)


@pytest.mark.parametrize("provider", sorted(CONFIGMAPS))
def test_the_images_entrypoint_runs_each_shipped_configmap(
    image: Path, provider: str, quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    """`ftwatch run` from the image's venv, with a provider's ConfigMap and its keys as
    the Secret's files: the first cycle is the baseline, a finished job then reaches
    stdout (JSON) and Slack once."""
    secrets, state = tmp_path / "secrets", tmp_path / "state"
    secrets.mkdir()
    state.mkdir()
    with world(provider) as api:
        lifecycle = LIFECYCLES[provider]
        job = api.add("tuned", lifecycle[0])
        keys = api.credentials(tmp_path)
        (secrets / "slack-webhook-url").write_text(receiver.url + "\n")
        # Nothing but the file says where the state goes; no port of a test's is taken.
        env = {k: v for k, v in quiet_env.items() if k != "FTWATCH_STATE__PATH"}
        env |= {"PATH": f"{image / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
        if provider == "bedrock":  # the component's environment, and the file it names
            (secrets / "aws-credentials").write_text(
                f"[default]\naws_access_key_id = {keys['AWS_ACCESS_KEY_ID']}\n"
                f"aws_secret_access_key = {keys['AWS_SECRET_ACCESS_KEY']}\n"
            )
            env |= {
                "AWS_SHARED_CREDENTIALS_FILE": str(secrets / "aws-credentials"),
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        elif provider == "vertex":  # the component's environment, and the key file it names
            (secrets / "google-credentials.json").write_text(api.sim.service_account_json())
            env |= {
                "GOOGLE_APPLICATION_CREDENTIALS": str(secrets / "google-credentials.json"),
                "NO_GCE_CHECK": "true",
            }
        else:
            (secrets / f"{provider.replace('_', '-')}-api-key").write_text(next(iter(keys.values())) + "\n")
        config = tmp_path / "ftwatch.toml"
        config.write_text(_configmap_here(provider, api.server.url, secrets, state))
        entrypoint = [str(image / "bin" / "ftwatch"), "run", "--once", "--config", str(config)]
        first = subprocess.run(entrypoint, env=env, capture_output=True, text=True, check=False, timeout=120)
        assert first.returncode == 0, first.stderr
        assert first.stdout == ""  # the baseline
        api.move(job, lifecycle[-1])
        second = subprocess.run(entrypoint, env=env, capture_output=True, text=True, check=False, timeout=120)
        assert second.returncode == 0, second.stderr
    [line] = second.stdout.splitlines()
    assert (json.loads(line)["model_id"], json.loads(line)["state"]) == (job, "ready")
    [slack] = receiver.bodies()
    assert "text" in slack
    assert (state / "ftwatch.db").exists()
    # The repository's own ftwatch agrees that the shipped file is a valid config.
    assert run_cli(["check-config", "--offline", "--config", str(config)], env).returncode == 0
