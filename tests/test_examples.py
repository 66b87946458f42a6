"""The shipped example configs are valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run_here

CONFIG = Path(__file__).resolve().parent.parent / "config"


@pytest.mark.parametrize("name", ["ftwatch.toml", "stdout.toml"])
def test_example_config_is_valid(name: str, base_env: dict[str, str]) -> None:
    """Every example config passes check-config."""
    env = {k: v for k, v in base_env.items() if not k.startswith("FTWATCH_")}
    done = run_here(["check-config", "--config", str(CONFIG / name)], env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["webhook.toml", "slack.toml", "sources.toml"])
def test_secret_file_examples_name_their_missing_file(name: str, base_env: dict[str, str]) -> None:
    """An example whose secret file is missing names that file, exit 2."""
    env = {k: v for k, v in base_env.items() if not k.startswith("FTWATCH_")}
    done = run_here(["check-config", "--config", str(CONFIG / name)], env)
    assert done.returncode == 2
    assert "/run/secrets/" in done.stderr
