"""Every answer true (issue 24): clocks, bodies, terminals and exit codes, each as a
user meets it (the CLI as a subprocess, the simulators as the APIs)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ftwatch.model import Transition
from ftwatch.notifiers.slack import slack_message
from ftwatch.sim.kit import Fault
from tests.conftest import FTWATCH, Daemon, baselined_job, free_port, hook_env, run_cli, run_once
from tests.conftest import wait_for as until
from tests.plugins import install_plugin
from tests.providers import world
from tests.receiver import Answer, Receiver
from tests.test_push import SECRET

DAY_NS = 86_400 * 1_000_000_000


@pytest.mark.parametrize("offset_ns", [-30 * DAY_NS, 5 * 1_000_000_000], ids=["30-days-behind", "5-s-ahead"])
def test_steps_between_polls_are_kept_whatever_the_providers_clock(
    offset_ns: int, quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as api:
        api.sim.clock_offset_ns = offset_ns
        # The baseline: queued, no time of its own.
        job, env = baselined_job(api, "skewed", quiet_env, tmp_path, receiver, "queued")
        api.move(job, "running")
        api.move(job, "succeeded")
        run_once(env)
        run_once(env)
        steps = receiver.steps()
        assert steps == [("queued", "running"), ("running", "succeeded")]


@pytest.mark.parametrize("end_time", [None, "yesterday-ish", "1999-01-01T00:00:00Z"], ids=["missing", "bad", "old"])
def test_bedrocks_failure_message_reaches_the_body_whatever_its_times(
    end_time: str | None, quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("bedrock") as api:
        job, env = baselined_job(api, "failing", quiet_env, tmp_path, receiver, "InProgress")
        api.sim.set_status(job, "Failed", failure_message="Insufficient permissions on s3://bucket/train.jsonl")
        times = {"endTime": end_time, "lastModifiedTime": end_time}
        api.sim.override(job, **{k: v for k, v in times.items() if v is not None})
        if end_time is None:
            api.sim.job(job).end_ns = None
            api.sim.override(job, lastModifiedTime=None)
        run_once(env)
        (body,) = receiver.bodies()
        assert body["status"] == "Failed"
        assert body["failure_message"] == "Insufficient permissions on s3://bucket/train.jsonl"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2026-12-01 21:54:13", "2026-12-01T21:54:13.000000000Z"),
        (1796161453, "2026-12-01T21:44:13.000000000Z"),
        (1796161453.5, "2026-12-01T21:44:13.500000000Z"),
        ("2026-12-01T21:54:13.123Z", "2026-12-01T21:54:13.123000000Z"),
    ],
)
def test_bedrock_times_are_read_as_the_aws_sdks_read_them(
    written: object, expected: str, quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("bedrock") as api:
        job, env = baselined_job(api, "dated", quiet_env, tmp_path, receiver, "InProgress")
        api.sim.set_status(job, "Completed")
        api.sim.override(job, endTime=written)
        run_once(env)
        (body,) = receiver.bodies()
        assert body["occurred_at"] == expected


def test_an_unreadable_bedrock_time_falls_back_to_detection_and_says_so_once(
    quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("bedrock") as api:
        job, env = baselined_job(api, "undated", quiet_env, tmp_path, receiver, "InProgress")
        api.sim.set_status(job, "Completed")
        api.sim.override(job, endTime="the day after tomorrow", lastModifiedTime="soon")
        stderr = run_once(env).stderr
        (body,) = receiver.bodies()
        assert body["occurred_at"] == body["detected_at"]
        told = [json.loads(line) for line in stderr.splitlines() if '"time.unreadable"' in line]
        assert {t["field"] for t in told} == {"endTime", "lastModifiedTime"}  # each once, not per read


HOSTILE_NAME = "\x1b]0;pwned\x07[/x] [link=https://evil.example]click[/link]\x1b[2J\u202egnp.exe"


def _no_raw_controls(text: str) -> None:
    for control in ("\x1b", "\x07", "\u202e"):
        assert control not in text, repr(text[:300])


def test_outside_text_is_data_in_the_view_the_text_notifier_and_the_outbox(
    quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("cohere") as api:
        model = api.add(HOSTILE_NAME, "STATUS_FINETUNING")
        env = api.env(quiet_env, tmp_path) | {"COLUMNS": "300"}
        watched = run_cli(["watch", "--once"], env)
        assert watched.returncode == 0, watched.stderr
        assert "[/x]" in watched.stdout  # shown as it is, not read as markup
        assert "\\x1b" in watched.stdout
        _no_raw_controls(watched.stdout + watched.stderr)
        hooked = env | {
            "FTWATCH_NOTIFIERS": json.dumps(
                [{"type": "stdout", "format": "text"}, {"type": "webhook", "url": receiver.url}]
            )
        }
        run_once(hooked)
        receiver.default = Answer(400, body=b"bad \x1b[31mred\x1b[0m \x07 body")
        api.move(model, "STATUS_READY")
        done = run_cli(["run", "--once"], hooked)
        assert done.returncode == 0, done.stderr
        assert "\\x1b" in done.stdout
        _no_raw_controls(done.stdout)
        listed = run_cli(["outbox", "--state", "dead"], hooked)
        assert listed.returncode == 0, listed.stderr
        assert "\\x1b" in listed.stdout
        _no_raw_controls(listed.stdout)


def test_a_long_odd_failure_message_is_one_bounded_line_in_bodies_and_slack(
    quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("bedrock") as api:
        job, env = baselined_job(api, "failing", quiet_env, tmp_path, receiver, "InProgress")
        odd = "first line\r\n> *not quoted* `code` \x1b[2J\n" + "x" * 10_000
        api.sim.set_status(job, "Failed", failure_message=odd)
        run_once(env)
        (body,) = receiver.bodies()
        reason = body["failure_message"]
        assert len(reason) <= 2048
        for control in ("\n", "\r", "\x1b"):
            assert control not in reason
        assert reason.startswith("first line > *not quoted*")
        message = slack_message(Transition.from_payload(body))
        plain = [b for b in message["blocks"] if b.get("text", {}).get("type") == "plain_text"]
        # The reason in its own block, not read as mrkdwn; then what the job came to.
        assert plain[0]["text"]["text"].startswith("first line &gt; *not quoted*")
        assert [b["text"]["text"].startswith("failed after ") for b in plain[1:]] == [True]
        assert len(plain[0]["text"]["text"]) < 400  # 300 characters, then escaped
        assert "\n" not in message["blocks"][0]["text"]["text"]


def test_an_apis_multi_line_error_is_one_line(quiet_env: dict[str, str], tmp_path: Path) -> None:
    with world("bedrock") as api:
        api.add("job", "InProgress")
        env = api.env(quiet_env, tmp_path) | {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
        done = run_cli(["run", "--once"], env)
        assert done.returncode == 3, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("ftwatch:")]
        assert len(lines) == 1, done.stderr
        assert "does not match the signature you provided" in lines[0]
        assert "Canonical String" not in done.stderr


def test_a_connection_error_names_the_url_and_the_reason(quiet_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    source = {
        "type": "openai",
        "base_url": f"http://127.0.0.1:{port}/secret-path?token=abc",
        "max_attempts": 1,
    }
    env = quiet_env | {"OPENAI_API_KEY": "sk-x", "FTWATCH_SOURCES": json.dumps([source])}
    done = run_cli(["run", "--once"], env)
    assert done.returncode == 1, done.stderr
    assert f"http://127.0.0.1:{port}: connection refused" in done.stderr
    assert "secret-path" not in done.stderr
    assert "token" not in done.stderr


def test_botocore_says_nothing_of_credentials_in_any_command(quiet_env: dict[str, str], tmp_path: Path) -> None:
    with world("bedrock") as api:
        api.add("job", "InProgress")
        env = api.env(quiet_env, tmp_path)
        for command in (["run", "--once"], ["models"], ["check-config"]):
            done = run_cli(command, env)
            assert done.returncode == 0, done.stderr
            assert "Found credentials" not in done.stderr


@pytest.mark.parametrize(("signum", "code"), [(2, 130), (15, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_wait_with_128_plus_its_number_never_0(
    signum: int, code: int, quiet_env: dict[str, str], tmp_path: Path
) -> None:
    with world("openai") as api:
        job = api.add("awaited", "running")
        env = api.env(quiet_env, tmp_path)
        proc = subprocess.Popen(
            [*FTWATCH, "wait", job, "--until", "ready", "--interval", "0.2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 15
        while api.sim.count() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.Signals(signum))
        _, stderr = proc.communicate(timeout=15)
        assert proc.returncode == code, stderr
        assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "command", [["wait", "j1", "--until", "ready", "--interval", "0.2"], ["models"]], ids=["wait", "models"]
)
def test_a_sigterm_that_lands_inside_a_read_ends_the_command_as_ctrl_c_would(
    command: list[str], quiet_env: dict[str, str], tmp_path: Path
) -> None:
    """The SIGTERM arrives while a task's own code runs (the source sends it to its
    process mid-read), not while the loop waits: the command still unwinds as from
    Ctrl-C, ends 143 and says nothing of an exception left in a task."""
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"j1": ["bot", "TRAINING"]}))
    env = quiet_env | {
        "PYTHONPATH": str(install_plugin(tmp_path)),
        "FTWATCH_SOURCES": json.dumps([{"type": "acme-interrupted", "name": "acme", "jobs_file": str(jobs)}]),
    }
    done = run_cli(command, env)
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr
    assert "unhandled" not in done.stderr


def test_an_unreachable_database_waits_connect_timeout_s_says_so_and_is_exit_1(
    quiet_env: dict[str, str], tmp_path: Path
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    env = quiet_env | {"FTWATCH_STATE__URL": url, "FTWATCH_STATE__CONNECT_TIMEOUT_S": "2", "CO_API_KEY": "x"}
    for command in (["run", "--once"], ["status"]):
        started = time.monotonic()
        done = run_cli(command, env)
        assert done.returncode == 1, done.stderr
        assert "did not answer within 2s" in done.stderr
        assert "connect_timeout_s" in done.stderr
        assert time.monotonic() - started < 15


def test_an_id_that_names_nothing_is_exit_2_for_events_wait_and_replay(
    quiet_env: dict[str, str], tmp_path: Path
) -> None:
    with world("openai") as api:
        api.add("real", "running")
        env = api.env(quiet_env, tmp_path)
        run_once(env)
        for command in (
            ["events", "ftjob-nothing"],
            ["wait", "ftjob-nothing", "--timeout", "20s", "--interval", "0.2"],
            ["outbox", "replay", "ftw_nothing"],
        ):
            done = run_cli(command, env)
            assert done.returncode == 2, (command, done.stderr)
            assert len([line for line in done.stderr.splitlines() if line.startswith("ftwatch:")]) == 1


def test_over_budget_and_api_waits_name_the_sources_own_keys(
    quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as api:
        for n in range(30):
            api.add(f"job-{n}", "running")
        port = free_port()
        # 60 requests a minute at a 1 s interval: a budget of 1 request per cycle.
        env = api.env(quiet_env, tmp_path, max_requests_per_minute=60) | {
            "FTWATCH_POLL__INTERVAL_S": "1",
            "FTWATCH_POLL__RECONCILE_SHARE": "0",
            "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
        }
        daemon = Daemon(env)
        try:
            daemon.wait_log('"poll.cycle"')
            for job in list(api.ids.values())[:3]:
                api.move(job, "succeeded")
            until(lambda: '"poll.over_budget"' in daemon.stderr, timeout=30, what="the over-budget warning")
        finally:
            assert daemon.stop() == 0
        (warning,) = [json.loads(x) for x in daemon.stderr.splitlines() if '"poll.over_budget"' in x][:1]
        assert warning["source"] == "openai"
        assert warning["max_requests_per_minute"] == 60
        assert "cohere" not in json.dumps(warning)


def test_a_down_source_logs_once_per_streak_not_every_cycle(quiet_env: dict[str, str], tmp_path: Path) -> None:
    with world("openai") as api:
        api.add("job", "running")
        env = api.env(quiet_env, tmp_path, max_attempts=2) | {"FTWATCH_POLL__INTERVAL_S": "0.3"}
        daemon = Daemon(env)
        try:
            daemon.wait_log('"poll.cycle"')
            api.sim.inject(Fault("503"), times=10_000)
            until(lambda: api.sim.count(code=503) >= 12, timeout=30, what="six failed cycles")
            api.sim.clear_faults()
            daemon.wait_log('"poll.recovered"', timeout=15)
        finally:
            assert daemon.stop() == 0
        warnings = [json.loads(x) for x in daemon.stderr.splitlines() if '"level": "warning"' in x]
        assert [w["event"] for w in warnings] == ["poll.failed"], warnings
        quiet = [x for x in daemon.stderr.splitlines() if '"poll.cycle"' in x]
        assert len(quiet) == 1  # the first; quiet cycles after it are at debug


def test_readyz_names_the_waiting_sources_own_cap(quiet_env: dict[str, str], tmp_path: Path) -> None:
    with world("openai") as api:
        api.add("job", "running")
        port = free_port()
        env = api.env(quiet_env, tmp_path, max_retry_after_s=3) | {
            "FTWATCH_POLL__INTERVAL_S": "1",
            "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
        }
        daemon = Daemon(env)
        try:
            daemon.wait_log('"poll.cycle"')
            api.sim.inject(Fault("429", retry_after_s=120), times=3)

            def reason() -> str:
                return str(httpx.get(f"http://127.0.0.1:{port}/readyz").json()["reason"])

            until(lambda: "max_retry_after_s" in reason(), timeout=15, what="the wait in /readyz")
            assert "capped from 120s by openai's max_retry_after_s" in reason()
        finally:
            assert daemon.stop() == 0


def test_status_shows_every_configured_notifier_and_only_the_configured_scope(
    quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as api:
        kept = api.add("kept", "running")
        api.add("dropped", "running")
        env = hook_env(api.env(quiet_env, tmp_path), receiver)
        run_once(env)  # both known, watching everything
        narrowed = hook_env(api.env(quiet_env, tmp_path, models=[kept]), receiver)
        narrowed["FTWATCH_NOTIFIERS"] = json.dumps(
            [
                {"type": "webhook", "url": receiver.url},
                {"type": "webhook", "url": receiver.url + "/other", "name": "quiet"},
            ]
        )
        done = run_cli(["status", "--json"], narrowed)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["models"] == {"openai": 1}  # the configured scope only
        assert "quiet" in report["notifiers"]  # configured, no rows yet
        assert report["notifiers"]["quiet"] == {"pending": 0, "dead": 0, "delivered": 0, "configured": True}
        assert "quiet" in run_cli(["status"], narrowed).stdout


def test_notify_test_names_each_notifier_by_its_key_and_sends_a_configured_sources_shape(
    quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as api:
        env = api.env(quiet_env, tmp_path) | {
            "FTWATCH_NOTIFIERS": json.dumps(
                [{"type": "webhook", "url": receiver.url + "/a"}, {"type": "webhook", "url": receiver.url + "/b"}]
            )
        }
        done = run_cli(["notify-test"], env)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) == 2
        assert lines[0] != lines[1]  # one host, two notifiers: told apart by key
        assert all(line.startswith("ok      webhook 127.0.0.1 [webhook-") for line in lines)
        bodies = receiver.bodies()
        assert {(b["provider"], b["source"], b["status"], b["state"]) for b in bodies} == {
            ("openai", "openai", "succeeded", "ready")
        }


def test_a_reload_starts_stops_and_restarts_sources_and_names_what_needs_a_restart_every_time(
    quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as openai, world("cohere") as cohere:
        job = openai.add("job", "running")
        other = openai.add("other", "running")
        model = cohere.add("model", "STATUS_FINETUNING")
        config = tmp_path / "ftwatch.toml"

        def write_toml(*tables: dict[str, object]) -> None:
            lines = []
            for table in tables:
                lines.append("[[sources]]")
                for key, value in table.items():
                    if isinstance(value, dict):
                        continue
                    lines.append(f"{key} = {json.dumps(value)}")
                for key, value in table.items():
                    if isinstance(value, dict):
                        lines.append(f"[sources.{key}]")
                        lines.extend(f"{k} = {json.dumps(v)}" for k, v in value.items())
            lines += ["[[notifiers]]", 'type = "webhook"', f'url = "{receiver.url}"']
            config.write_text("\n".join(lines) + "\n")

        env = quiet_env | openai.credentials(tmp_path) | cohere.credentials(tmp_path)
        env |= {"FTWATCH_CONFIG": str(config), "FTWATCH_POLL__INTERVAL_S": "0.5"}
        write_toml(openai.source())
        daemon = Daemon(env)

        def reloaded(count: int) -> dict[str, object]:
            daemon.send(signal.SIGHUP)
            daemon.wait_log('"reload.done"', count=count)
            return json.loads([x for x in daemon.stderr.splitlines() if '"reload.done"' in x][-1])

        def restart_needed() -> list[str]:
            lines = [json.loads(x) for x in daemon.stderr.splitlines() if '"reload.restart_needed"' in x]
            return list(lines[-1]["keys"]) if lines else []

        try:
            daemon.wait_log('"poll.cycle"')
            assert cohere.sim.count() == 0
            write_toml(openai.source(), cohere.source())  # a source added
            reloaded(1)
            assert '"reload.sources"' in daemon.stderr
            until(lambda: cohere.sim.count() > 0, timeout=10, what="the added source polled")
            cohere.move(model, "STATUS_READY")
            until(lambda: any(b["source"] == "cohere" for b in receiver.bodies()), timeout=10, what="its transition")

            write_toml(openai.source(models=[job]), cohere.source())  # only models: taken live
            before = daemon.stderr.count('"reload.sources"')
            reloaded(2)
            assert daemon.stderr.count('"reload.sources"') == before  # nothing restarted
            assert not restart_needed()
            openai.move(other, "succeeded")  # outside the models now
            openai.move(job, "succeeded")
            until(lambda: any(b["model_id"] == job for b in receiver.bodies()), timeout=10, what="the kept job")
            assert not any(b["model_id"] == other for b in receiver.bodies())

            write_toml(openai.source(models=[job], webhook={"secret": SECRET}), cohere.source())
            reloaded(3)
            assert restart_needed() == ["sources[openai].webhook"]
            reloaded(4)  # nothing new in the file: still not applied, still said
            assert daemon.stderr.count('"reload.restart_needed"') == 2

            write_toml(openai.source(models=[job], webhook={"secret": SECRET}))  # a source removed
            reloaded(5)
            time.sleep(1.0)
            polled = cohere.sim.count()
            time.sleep(1.5)
            assert cohere.sim.count() == polled  # stopped
        finally:
            assert daemon.stop() == 0
        assert "Traceback" not in daemon.stderr
