"""Azure OpenAI's differences from OpenAI's shape: its two route families, its two
kinds of credential, and the one line that names both when neither is there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftwatch.sim import azure_openai as azure_sim

from .conftest import run_here
from .providers import world


def _listed(env: dict[str, str]) -> list[str]:
    done = run_here(["models", "-o", "json"], env)
    assert done.returncode == 0, done.stderr
    return [row["id"] for row in json.loads(done.stdout)]


@pytest.mark.parametrize("api_version", [azure_sim.API_VERSION, "v1"])
def test_the_dated_and_the_v1_routes_list_the_same_jobs(
    api_version: str, quiet_env: dict[str, str], tmp_path: Path
) -> None:
    """A dated api-version goes on every request to /openai/…; "v1" selects the
    /openai/v1/… routes, with none."""
    with world("azure_openai") as api:
        job = api.add("tuned", "running")
        env = api.env(quiet_env, tmp_path, api_version=api_version)
        assert _listed(env) == [job]
        assert api.sim.unversioned == []  # the dated routes refuse a request without one
        assert api.sim.stray_paths == []


def test_an_entra_token_is_sent_as_a_bearer_when_no_key_is_given(quiet_env: dict[str, str], tmp_path: Path) -> None:
    with world("azure_openai") as api:
        job = api.add("tuned", "pending")
        env = {k: v for k, v in api.env(quiet_env, tmp_path).items() if k != "AZURE_OPENAI_API_KEY"}
        token_file = tmp_path / "token"
        token_file.write_text(azure_sim.DEFAULT_TOKEN + "\n")
        assert _listed(env | {"AZURE_OPENAI_AD_TOKEN": azure_sim.DEFAULT_TOKEN}) == [job]
        sources = json.loads(env["FTWATCH_SOURCES"])
        sources[0]["ad_token_file"] = str(token_file)
        assert _listed(env | {"FTWATCH_SOURCES": json.dumps(sources)}) == [job]


def test_no_key_and_no_token_is_one_line_naming_both(quiet_env: dict[str, str], tmp_path: Path) -> None:
    with world("azure_openai") as api:
        env = {k: v for k, v in api.env(quiet_env, tmp_path).items() if k != "AZURE_OPENAI_API_KEY"}
        done = run_here(["models"], env)
    assert done.returncode == 2, done.stderr
    assert "AZURE_OPENAI_API_KEY" in done.stderr
    assert "AZURE_OPENAI_AD_TOKEN" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_no_endpoint_is_one_line_naming_the_variable(quiet_env: dict[str, str]) -> None:
    env = quiet_env | {"FTWATCH_SOURCES": '[{"type": "azure_openai"}]', "AZURE_OPENAI_API_KEY": "k"}
    done = run_here(["models"], env)
    assert done.returncode == 2, done.stderr
    assert "AZURE_OPENAI_ENDPOINT" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
