"""Configuration as users get it wrong: one line, exit 2, nothing leaked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ftwatch.settings import default_state_path, load_settings

from .conftest import notifiers_env, run_cli, run_here

BAD_FILES = {
    "not TOML": ("[poll\ninterval_s = 1", "is not valid TOML"),
    "zero interval": ("[poll]\ninterval_s = 0", "poll.interval_s: must be greater than 0"),
    "unknown key": ("[poll]\nintervall_s = 5", "poll: unknown key `intervall_s` (did you mean `interval_s`?)"),
    "unknown section": ("[pol]\ninterval_s = 5", "top level: unknown key `pol` (did you mean `poll`?)"),
    "bad listen": ('[http]\nlisten = "9464"', "http.listen"),
    "unknown notifier": ('[[notifiers]]\ntype = "pager"', "unknown notifier type 'pager'"),
    "notifier without type": ('[[notifiers]]\nurl = "https://x"', "notifiers[0] has no type"),
    "webhook without url": ('[[notifiers]]\ntype = "webhook"', "needs url"),
    "unknown status": (
        '[[notifiers]]\ntype = "stdout"\nstatuses = ["DONE"]',
        "'DONE' is no known status",
    ),
    "bad secret": (
        '[[notifiers]]\ntype = "webhook"\nurl = "https://example.com/h"\nsecret = "whsec_***"',
        "whsec_",
    ),
    "missing secret file": (
        '[[notifiers]]\ntype = "slack"\nwebhook_url_file = "/nonexistent/slack-url"',
        "cannot read /nonexistent/slack-url",
    ),
    "bad log level": ('log_level = "loud"', "log_level"),
}


# Every case through check-config; run shares the loading path, so three suffice there.
CASES = [(name, "check-config") for name in sorted(BAD_FILES)] + [
    (name, "run") for name in ("zero interval", "unknown notifier", "not TOML")
]


@pytest.mark.parametrize(("name", "command"), CASES)
def test_a_bad_config_file_is_one_line_and_exit_2(
    name: str, command: str, base_env: dict[str, str], tmp_path: Path
) -> None:
    """Each kind of bad configuration is one line naming the problem, exit 2, no traceback."""
    text, expected = BAD_FILES[name]
    config = tmp_path / "ftwatch.toml"
    config.write_text(text)
    # Let the file speak: the environment would win over it.
    env = {k: v for k, v in base_env.items() if k not in ("FTWATCH_HTTP__LISTEN", "FTWATCH_POLL__INTERVAL_S")}
    done = run_cli([command, "--config", str(config)], env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("ftwatch: ")
    assert expected in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FTWATCH_POLL__INTERVAL_S": "-1"}, "FTWATCH_POLL__INTERVAL_S"),
        ({"FTWATCH_NOTIFIERS": "[{not json"}, "invalid configuration"),
        ({"CO_API_KEY": ""}, "CO_API_KEY"),
        ({"CO_API_URL": "ftp://nowhere"}, "cohere.base_url"),
    ],
)
def test_bad_environment_is_one_line_and_exit_2(env: dict[str, str], expected: str, base_env: dict[str, str]) -> None:
    """A bad FTWATCH_* value is one line naming the variable, exit 2."""
    done = run_cli(["check-config"], {**base_env, **env})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr


def test_missing_key_names_co_api_key_and_api_key_file(base_env: dict[str, str]) -> None:
    """No key anywhere: the message names CO_API_KEY and api_key_file."""
    env = {k: v for k, v in base_env.items() if k != "CO_API_KEY"}
    done = run_here(["run", "--once"], env)
    assert done.returncode == 2
    assert "CO_API_KEY" in done.stderr
    assert "api_key_file" in done.stderr


def test_missing_config_file_is_exit_2(base_env: dict[str, str], tmp_path: Path) -> None:
    """A --config file that does not exist is exit 2 with the fix."""
    done = run_cli(["check-config", "--config", str(tmp_path / "nope.toml")], base_env)
    assert done.returncode == 2
    assert "does not exist" in done.stderr


def test_usage_errors_are_one_line_and_exit_2(base_env: dict[str, str]) -> None:
    """Argument errors are one line and exit 2."""
    for args in (["frobnicate"], ["watch", "--interval", "0"], ["run", "--bogus"]):
        done = run_cli(args, base_env)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_sources_in_order_defaults_file_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults < TOML file < environment, as the contract orders them."""
    config = tmp_path / "ftwatch.toml"
    config.write_text(
        '[cohere]\nbase_url = "https://file.example"\ntimeout_s = 3\n[poll]\ninterval_s = 7\nmodels = ["a"]\n'
    )
    monkeypatch.setenv("FTWATCH_POLL__INTERVAL_S", "2.5")
    monkeypatch.setenv("CO_API_URL", "https://co.example")
    settings, path = load_settings(str(config))
    assert path == config
    assert settings.poll.interval_s == 2.5  # environment beats the file
    assert settings.poll.models == ["a"]  # the file beats the defaults
    assert settings.cohere.timeout_s == 3
    assert settings.cohere.base_url == "https://co.example"


def test_config_file_is_found_by_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is --config, else $FTWATCH_CONFIG, else ./ftwatch.toml."""
    (tmp_path / "ftwatch.toml").write_text("[poll]\ninterval_s = 11\n")
    other = tmp_path / "other.toml"
    other.write_text("[poll]\ninterval_s = 12\n")
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("FTWATCH_")]:
        monkeypatch.delenv(name)
    assert load_settings(None)[0].poll.interval_s == 11
    monkeypatch.setenv("FTWATCH_CONFIG", str(other))
    assert load_settings(None)[0].poll.interval_s == 12


def test_state_path_defaults_to_the_systemd_state_directory() -> None:
    """Without [state] path the file is $STATE_DIRECTORY/ftwatch.db, else ./ftwatch-state.db."""
    assert default_state_path({"STATE_DIRECTORY": "/var/lib/ftwatch:/other"}) == Path("/var/lib/ftwatch/ftwatch.db")
    assert default_state_path({}) == Path("ftwatch-state.db")


def test_check_config_prints_the_effective_config_redacted(base_env: dict[str, str], tmp_path: Path) -> None:
    """check-config prints the effective configuration with every secret hidden."""
    secret_file = tmp_path / "whsec"
    secret_file.write_text("whsec_c2VjcmV0\n")
    env = {
        **base_env,
        "FTWATCH_POLL__MODELS": '["ft-1"]',
        **notifiers_env(
            {"type": "webhook", "url": "https://hooks.example.com/in/abc-secret-path", "secret_file": str(secret_file)},
            {
                "type": "slack",
                "webhook_url": "https://hooks.slack.com/services/T1/B2/zzz-secret",
                "statuses": ["ready"],
            },
            {"type": "stdout", "format": "json"},
        ),
    }
    done = run_cli(["check-config"], env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["poll"]["models"] == ["ft-1"]
    assert shown["notifiers"][0]["url"] == "https://hooks.example.com/**********"
    assert shown["notifiers"][0]["secret"] is None  # kept in its file, read only when the notifier is built
    assert shown["notifiers"][0]["secret_file"] == str(secret_file)
    assert shown["notifiers"][1]["webhook_url"] == "https://hooks.slack.com/**********"
    assert shown["notifiers"][1]["statuses"] == ["STATUS_READY"]
    assert shown["cohere"]["api_key"] == "(set, from environment CO_API_KEY)"
    for secret in ("abc-secret-path", "zzz-secret", "c2VjcmV0", base_env["CO_API_KEY"]):
        assert secret not in done.stdout + done.stderr
