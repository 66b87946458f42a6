"""The command line's conventions (issue 22, in part): global options before or after
the command, `ftwatch version`, bare `ftwatch`, an unknown option's pointer."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_a_piped_table_is_never_cut_and_a_single_table_has_no_quit_hint(
    quiet_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.providers import world  # noqa: PLC0415

    long_name = "claims-titan-model-" + "x" * 101  # 120 characters
    with world("cohere") as api:
        api.add(long_name, "STATUS_FINETUNING")
        done = run_cli(["watch", "--once"], api.env(quiet_env, tmp_path))
        assert done.returncode == 0, done.stderr
        assert long_name in done.stdout
        assert "LAST CHANGE" in done.stdout
        assert "1 model ·" in done.stdout
        assert "Ctrl-C" not in done.stdout


def test_messages_count_right_and_say_states_in_plain_words() -> None:
    from ftwatch.model import Transition  # noqa: PLC0415
    from ftwatch.notifiers.slack import slack_message  # noqa: PLC0415
    from ftwatch.wording import plural  # noqa: PLC0415

    assert [plural(n, "delivery") for n in (0, 1, 2)] == ["0 deliveries", "1 delivery", "2 deliveries"]
    assert plural(1, "notifier") == "1 notifier"
    done = Transition(
        "ftw_x", "ftjob-1", "outage-job", "succeeded", "running", "2026-12-01T00:00:00Z", None,
        "2026-12-01T00:00:01Z", provider="openai", source="openai",
    )  # fmt: skip
    assert slack_message(done)["text"].startswith("outage-job succeeded (was running)")


def test_logs_on_a_terminal_honour_no_color(quiet_env: dict[str, str]) -> None:
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    from tests.conftest import FTWATCH  # noqa: PLC0415

    if shutil.which("script") is None:
        import pytest  # noqa: PLC0415

        pytest.skip("util-linux's script is needed to give ftwatch a terminal")
    command = " ".join([*FTWATCH, "check-config"])
    for no_color, coloured in (("1", False), ("", True)):
        env = quiet_env | {"CO_API_KEY": "x", "NO_COLOR": no_color, "FTWATCH_LOG_LEVEL": "debug", "TERM": "xterm"}
        done = subprocess.run(
            ["script", "-qec", command, "/dev/null"], env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert ("\x1b[" in done.stdout) is coloured, done.stdout[-500:]


def _timeless(value: object) -> object:
    """A document without its ages (they move between two calls)."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if "age" not in k and "oldest" not in k}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def test_every_listing_command_speaks_each_output_shape(quiet_env: dict[str, str], tmp_path: Path) -> None:
    import yaml  # noqa: PLC0415

    from tests.providers import world  # noqa: PLC0415

    with world("openai") as api:
        job = api.add("job", "running")
        env = api.env(quiet_env, tmp_path) | {"FTWATCH_NOTIFIERS": '[{"type": "webhook", "url": "http://127.0.0.1:9"}]'}
        assert run_cli(["run", "--once"], env).returncode == 0
        api.move(job, "succeeded")
        assert run_cli(["run", "--once"], env).returncode == 0  # its delivery stays pending: nobody listens
        commands = {
            "models": ["models"],
            "events": ["events", job],
            "outbox": ["outbox", "--state", "pending"],
            "status": ["status"],
            "wait": ["wait", job, "--timeout", "20s", "--interval", "0.2"],
        }
        for name, command in commands.items():
            shapes = {}
            for fmt in ("text", "wide", "json", "jsonl", "yaml"):
                done = run_cli([*command, "-o", fmt], env)
                assert done.returncode == 0, (name, fmt, done.stderr)
                shapes[fmt] = done.stdout
            document = _timeless(json.loads(shapes["json"]))
            assert _timeless(yaml.safe_load(shapes["yaml"])) == document, name
            lines = [_timeless(json.loads(line)) for line in shapes["jsonl"].splitlines()]
            if name == "status":
                assert isinstance(document, dict)
                assert lines == [document]
            else:
                assert isinstance(document, list), name
                if name != "wait":  # wait reports what moved while it waited: nothing here
                    assert lines == document, name
                    assert document, name
            if shapes["text"]:
                assert len(shapes["wide"].splitlines()[0]) >= len(shapes["text"].splitlines()[0]), name
        # --json keeps its old shapes.
        legacy = json.loads(run_cli(["models", "--json"], env).stdout)[0]
        assert legacy.keys() == {"id", "name", "status", "updated_at", "source"}


def test_completion_scripts_parse_and_complete_commands_and_source_names(
    quiet_env: dict[str, str], tmp_path: Path
) -> None:
    import os  # noqa: PLC0415
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    scripts = {}
    for shell in ("bash", "zsh", "fish"):
        done = run_cli(["completion", shell], quiet_env)
        assert done.returncode == 0, done.stderr
        scripts[shell] = tmp_path / f"ftwatch.{shell}"
        scripts[shell].write_text(done.stdout)
    assert subprocess.run(["bash", "-n", str(scripts["bash"])], check=False).returncode == 0
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-n", str(scripts["zsh"])], check=False).returncode == 0
    assert "complete -c ftwatch" in scripts["fish"].read_text()
    # bash, for real: the script completes commands, and --source from the config.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ftwatch").write_text(f'#!/bin/sh\nexec {sys.executable} -m ftwatch "$@"\n')
    (bin_dir / "ftwatch").chmod(0o755)
    sources = '[{"type": "openai", "name": "openai-prod"}, {"type": "cohere"}]'
    env = quiet_env | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FTWATCH_SOURCES": sources}

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        script = (
            f"source {scripts['bash']}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
            f"COMP_CWORD={len(words) - 1}; COMP_LINE={line!r}; COMP_POINT={len(line)}; "
            "_shtab_ftwatch; printf '%s\\n' \"${COMPREPLY[@]}\""
        )
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=False)
        return done.stdout.split()

    assert {"wait", "watch"} <= set(complete("ftwatch wa"))
    assert set(complete("ftwatch models --source ")) == {"openai-prod", "cohere"}


def test_the_shipped_completion_scripts_are_what_the_parser_makes(quiet_env: dict[str, str]) -> None:
    from ftwatch.app.cli import generate_completion  # noqa: PLC0415

    root = Path(__file__).resolve().parent.parent / "src" / "ftwatch" / "completions"
    for shell, name in (("bash", "ftwatch.bash"), ("zsh", "_ftwatch"), ("fish", "ftwatch.fish")):
        assert (root / name).read_text() == generate_completion(shell), (
            f"regenerate: python -c 'from ftwatch.app.cli import generate_completion as g; "
            f'print(g("{shell}"), end="")\' > src/ftwatch/completions/{name}'
        )
        assert run_cli(["completion", shell], quiet_env).stdout == (root / name).read_text()


def test_config_mistakes_come_together_with_suggestions_and_a_typoed_variable_is_named(
    quiet_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "ftwatch.toml"
    config.write_text('[poll]\nintervl_s = 3\n[state]\nlease_s = "soon"\n')
    env = quiet_env | {"CO_API_KEY": "x", "FTWATCH_POL__INTERVAL_S": "2"}
    done = run_cli(["check-config", "--config", str(config)], env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert "FTWATCH_POL__INTERVAL_S matches no configuration key" in lines[0]
    assert "did you mean FTWATCH_POLL__INTERVAL_S?" in lines[0]
    errors = [line for line in lines if "invalid configuration" in line]
    assert len(errors) == 2  # both mistakes, one line each
    assert any("unknown key `intervl_s` (did you mean `interval_s`?)" in line for line in errors)
    assert any("state.lease_s: must be a number" in line and str(config) in line for line in errors)
    assert all(line.startswith("ftwatch: ") for line in lines)


def test_check_config_offline_needs_no_secret_file_and_no_key(quiet_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "ftwatch.toml"
    config.write_text(
        '[[notifiers]]\ntype = "slack"\nwebhook_url_file = "/nonexistent/slack-url"\n'
        '[[sources]]\ntype = "openai"\napi_key_file = "/nonexistent/openai-key"\n'
    )
    offline = run_cli(["check-config", "--offline", "--config", str(config)], quiet_env)
    assert offline.returncode == 0, offline.stderr
    assert "offline" in offline.stderr
    online = run_cli(["check-config", "--config", str(config)], quiet_env)
    assert online.returncode == 2  # the real check still reads them


def test_every_option_has_help_and_every_command_ends_with_examples(quiet_env: dict[str, str]) -> None:
    import argparse  # noqa: PLC0415

    from ftwatch.app.cli import _parser  # noqa: PLC0415
    from ftwatch.app.clidoc import commands_of  # noqa: PLC0415

    for name, parser in commands_of(_parser()):
        assert isinstance(parser, argparse.ArgumentParser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
        if name != "ftwatch":
            done = run_cli([*name.split()[1:], "--help"], quiet_env)
            assert done.returncode == 0
            examples = done.stdout.partition("examples:\n")[2].splitlines()
            assert 2 <= len([line for line in examples if line.strip()]) <= 3, name


def test_force_color_gives_coloured_log_lines_through_a_pipe(quiet_env: dict[str, str]) -> None:
    env = quiet_env | {"CO_API_KEY": "x", "FTWATCH_LOG_LEVEL": "debug"}
    plain = run_cli(["run", "--once"], env | {"CO_API_URL": "http://127.0.0.1:9", "FTWATCH_COHERE__MAX_ATTEMPTS": "1"})
    forced = run_cli(
        ["run", "--once"],
        env | {"CO_API_URL": "http://127.0.0.1:9", "FTWATCH_COHERE__MAX_ATTEMPTS": "1", "FORCE_COLOR": "1"},
    )
    assert plain.stderr.lstrip().startswith("{")  # JSON lines for a machine
    assert "\x1b[" in forced.stderr
    assert not forced.stderr.lstrip().startswith("{")


def test_the_cli_reference_in_the_docs_is_what_the_parser_says() -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    made = subprocess.run(
        [sys.executable, "-m", "ftwatch.app.clidoc"], capture_output=True, text=True, check=True
    ).stdout
    page = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    assert page.read_text() == made, "regenerate: python -m ftwatch.app.clidoc > docs/cli.md"


def test_the_config_is_found_in_xdg_config_home_when_no_other_is_given(
    quiet_env: dict[str, str], tmp_path: Path
) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "ftwatch").mkdir(parents=True)
    (xdg / "ftwatch" / "ftwatch.toml").write_text("[poll]\ninterval_s = 11\n")
    env = quiet_env | {"CO_API_KEY": "x", "XDG_CONFIG_HOME": str(xdg)}
    done = run_cli(["check-config"], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["config_file"] == str(xdg / "ftwatch" / "ftwatch.toml")
    assert report["poll"]["interval_s"] == 11.0


def test_the_daemon_starts_without_the_extras_httpx_and_structlog_would_load_for_nothing() -> None:
    # A clean interpreter: what the command line loads before its first request. The
    # extras (httpx's own command line, httpcore's HTTP/2, structlog's rich tracebacks)
    # are a fifth of a start (bench/startup.py); once past, they import as usual.
    probe = (
        "import sys\n"
        "from ftwatch.ops.lean_imports import import_core_libraries\n"
        "import_core_libraries()\n"
        "import httpx, structlog\n"
        "httpx.Client().close()\n"
        "print(sorted(n for n in ('click', 'rich', 'pygments', 'h2') if n in sys.modules))\n"
        "import rich.console, h2.connection\n"
        "print(rich.console.Console.__name__, h2.connection.H2Connection.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "Console H2Connection"]
