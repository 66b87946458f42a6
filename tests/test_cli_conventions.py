"""The command line's conventions (issue 22, in part): global options before or after
the command, `ftwatch version`, bare `ftwatch`, an unknown option's pointer."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def test_global_options_go_before_or_after_the_command(quiet_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "x.toml"
    config.write_text("[poll]\ninterval_s = 7\n")
    env = quiet_env | {"CO_API_KEY": "x"}
    before = run_cli(["--config", str(config), "check-config"], env)
    after = run_cli(["check-config", "--config", str(config)], env)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert before.stdout == after.stdout
    assert json.loads(before.stdout)["poll"]["interval_s"] == 7.0


def test_version_is_a_command_and_says_its_extras_as_json(quiet_env: dict[str, str]) -> None:
    text = run_cli(["version"], quiet_env)
    assert text.returncode == 0
    assert text.stdout.startswith("ftwatch ")
    assert run_cli(["--version"], quiet_env).stdout == text.stdout
    report = json.loads(run_cli(["version", "-o", "json"], quiet_env).stdout)
    assert set(report) == {"version", "python", "extras"}
    assert "postgres" in report["extras"]  # the test extras install psycopg


def test_bare_ftwatch_shows_the_commands_and_an_unknown_option_points_to_its_commands_help(
    quiet_env: dict[str, str],
) -> None:
    bare = run_cli([], quiet_env)
    assert bare.returncode == 2
    for command in ("run", "watch", "wait", "status", "version"):
        assert command in bare.stderr
    bogus = run_cli(["run", "--bogus"], quiet_env)
    assert bogus.returncode == 2
    assert bogus.stderr.strip() == "ftwatch: unrecognized arguments: --bogus (see 'ftwatch run --help')"
