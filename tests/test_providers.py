"""The whole watcher against each provider's simulator: the CLI as a subprocess,
webhooks to a real receiver, every provider through the same tests."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from ftwatch.cycle import CycleFindings, Polled, Standby
from ftwatch.model import Transition, format_timestamp, parse_timestamp
from ftwatch.notifiers.slack import slack_message
from ftwatch.ops.metrics import Metrics
from ftwatch.sim.kit import Fault
from ftwatch.wording import text_line
from tests.conftest import FTWATCH, Daemon, baselined_job, hook_env, run_cli, run_here, run_once, wait_for
from tests.providers import FAILED, LIFECYCLES, PROVIDERS, World, aws_env, world
from tests.receiver import Answer, Receiver


@pytest.fixture(params=PROVIDERS)
def api(request: pytest.FixtureRequest) -> Iterator[World]:
    with world(request.param) as running:
        yield running


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """No key of anyone's, fast timings, a state file of the test's own."""
    prefixes = ("FTWATCH_", "CO_", "COHERE_", "OPENAI_", "AWS_", "NOTIFY_", "WATCHDOG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return env | {
        "FTWATCH_STATE__PATH": str(tmp_path / "state.db"),
        "FTWATCH_HTTP__LISTEN": "",
        "FTWATCH_POLL__INTERVAL_S": "0.2",
        "FTWATCH_DELIVERY__RETRY_INITIAL_S": "0.05",
        "FTWATCH_DELIVERY__RETRY_MAX_S": "0.2",
        "PYTHONUNBUFFERED": "1",
    }


def _bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.received]


def test_a_first_run_is_the_baseline_and_each_change_is_sent_once_across_restarts(
    api: World, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    lifecycle = LIFECYCLES[api.provider]
    job = api.add("classifier", lifecycle[0])
    api.add("untouched", lifecycle[0])
    env = hook_env(api.env(clean_env, tmp_path), receiver)
    run_once(env)
    assert receiver.received == []  # what was there at the first start is history

    for status in lifecycle[1:]:  # one change per run: a new process each time
        api.move(job, status)
        run_once(env)
    run_once(env)  # nothing new: nothing sent again

    bodies = _bodies(receiver)
    assert [(b["previous_status"], b["status"]) for b in bodies] == list(itertools.pairwise(lifecycle))
    assert {b["model_id"] for b in bodies} == {job}
    assert {(b["provider"], b["source"]) for b in bodies} == {(api.provider, api.provider)}
    assert bodies[-1]["state"] in ("ready", "cancelled")
    assert len({b["id"] for b in bodies}) == len(bodies)
    # The webhook-id header is the body's id, as for Cohere.
    assert [r.headers.get("webhook-id", r.json()["id"]) for r in receiver.received] == [b["id"] for b in bodies]


def test_steps_between_two_polls_are_recovered_in_order_where_the_provider_keeps_them(
    api: World, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    lifecycle = LIFECYCLES[api.provider]
    job, env = baselined_job(api, "quick", clean_env, tmp_path, receiver, lifecycle[0])
    for status in lifecycle[1:]:
        api.move(job, status)  # every step before the next poll
    run_once(env)

    steps = [(b["previous_status"], b["status"]) for b in _bodies(receiver)]
    if api.provider in ("bedrock", "fireworks", "vertex"):
        # No status history to read: the snapshot's jump, once, timed by the job.
        assert steps == [(lifecycle[0], lifecycle[-1])]
        if api.provider == "bedrock":
            end_ns = api.sim.job(job).end_ns
            assert _bodies(receiver)[0]["occurred_at"] == format_timestamp(parse_timestamp(format_timestamp(end_ns, 3)))
        else:  # its completedTime (endTime), at the 0 to 9 digits the API wrote
            occurred_ns = parse_timestamp(_bodies(receiver)[0]["occurred_at"])
            sim_job = api.sim.job(job)
            ended_ns = sim_job.end_ns if api.provider == "vertex" else sim_job.completed_ns
            assert 0 <= ended_ns - occurred_ns < 1_000_000_000
    else:
        assert steps == list(itertools.pairwise(lifecycle))
        times = [b["occurred_at"] for b in _bodies(receiver)]
        assert times == sorted(times)


def test_a_job_created_after_the_baseline_is_reported_from_its_first_status(
    api: World, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    api.add("old", LIFECYCLES[api.provider][0])
    env = hook_env(api.env(clean_env, tmp_path), receiver)
    run_once(env)
    new = api.add("new", LIFECYCLES[api.provider][1])
    run_once(env)
    bodies = [b for b in _bodies(receiver) if b["model_id"] == new]
    assert bodies, _bodies(receiver)
    assert bodies[0]["previous_status"] is None
    assert bodies[-1]["status"] == LIFECYCLES[api.provider][1]


def test_faults_are_retried_and_nothing_is_lost(
    api: World, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    lifecycle = LIFECYCLES[api.provider]
    job, env = baselined_job(api, "flaky", clean_env, tmp_path, receiver, lifecycle[0])
    api.move(job, lifecycle[-1])
    for kind in ("429", "500", "drop", "malformed"):
        api.server.inject(Fault(kind, endpoint="list_models", retry_after_s=0.1))
    run_once(env)
    assert api.server.pending_faults() == 0
    assert [b["status"] for b in _bodies(receiver)][-1] == lifecycle[-1]


def test_a_refused_key_exits_3_naming_where_the_key_comes_from(
    api: World, clean_env: dict[str, str], tmp_path: Path
) -> None:
    api.add("any")
    env = api.env(clean_env, tmp_path)
    if api.provider == "bedrock":
        env |= aws_env(tmp_path, secret="not-the-secret")
    elif api.provider == "vertex":  # a service account whose key Google does not know
        unknown = tmp_path / "unknown-account.json"
        unknown.write_text(api.sim.service_account_json(registered=False))
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(unknown)
    else:  # the provider's key variable, with a key it does not know
        env |= dict.fromkeys(api.credentials(tmp_path), "sk-wrong" if api.provider == "openai" else "wrong-key")
    done = run_here(["run", "--once"], env)
    assert done.returncode == 3, done.stderr
    assert "refused the key" in done.stderr
    assert "Traceback" not in done.stderr
    for secret in ("wrong-key", "sk-wrong", "not-the-secret"):
        assert secret not in done.stderr
    if api.provider == "bedrock":
        assert any("signature" in why for why in api.sim.refusals)


def test_a_missing_key_is_a_one_line_error_naming_the_variable(
    api: World, clean_env: dict[str, str], tmp_path: Path
) -> None:
    env = clean_env | {"FTWATCH_SOURCES": json.dumps([api.source()])}
    done = run_here(["run", "--once"], env)
    assert done.returncode == 2, done.stderr
    expected = "AWS_REGION" if api.provider == "bedrock" else next(iter(api.credentials(tmp_path)))
    if api.provider == "vertex":  # a credentials file that is not there (no metadata server is asked)
        env |= {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json"), "NO_GCE_CHECK": "true"}
        done = run_here(["run", "--once"], env)
    if api.provider == "bedrock":  # a region is given: the credentials are what is missing
        env |= {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(tmp_path / "none")}
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
        done = run_here(["run", "--once"], env)
        assert done.returncode == 2, done.stderr
        expected = "AWS_ACCESS_KEY_ID"
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_models_events_and_watch_show_each_provider(api: World, clean_env: dict[str, str], tmp_path: Path) -> None:
    lifecycle = LIFECYCLES[api.provider]
    job = api.add("shown", lifecycle[0])
    api.move(job, lifecycle[1])
    env = api.env(clean_env, tmp_path)

    models = run_cli(["models", "--json"], env)
    assert models.returncode == 0, models.stderr
    rows = json.loads(models.stdout)
    assert [(r["id"], r["status"], r["source"]) for r in rows] == [(job, lifecycle[1], api.provider)]

    events = run_cli(["events", job, "--json"], env)
    assert events.returncode == 0, events.stderr
    assert json.loads(events.stdout)[-1]["status"] == lifecycle[1]

    watch = run_cli(["watch", "--once"], env)
    assert watch.returncode == 0, watch.stderr
    assert job in watch.stdout


def test_a_sigkilled_daemon_resends_what_it_had_not_delivered_with_the_same_id(
    api: World, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    lifecycle = LIFECYCLES[api.provider]
    job, env = baselined_job(api, "durable", clean_env, tmp_path, receiver, lifecycle[0])
    receiver.default = Answer(status=503)  # down: the transition stays in the outbox
    daemon = Daemon(env)
    try:
        daemon.wait_log("poll.cycle")
        api.move(job, lifecycle[1])
        wait_for(lambda: receiver.attempts, what="a first attempt")
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(timeout=10)
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    first_id = receiver.attempts[0].json()["id"]
    receiver.default = Answer()
    run_once(env)
    assert [b["id"] for b in _bodies(receiver)] == [first_id]


def test_a_failure_carries_its_message_and_a_success_its_model(
    clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    for provider in ("openai", "bedrock"):
        with world(provider) as api:
            receiver.received.clear()
            good, bad = api.add("good"), api.add("bad")
            (tmp_path / provider).mkdir()
            env = hook_env(api.env(clean_env, tmp_path / provider), receiver)
            env["FTWATCH_STATE__PATH"] = str(tmp_path / provider / "state.db")
            run_once(env)
            api.move(good, "succeeded" if provider == "openai" else "Completed")
            api.move(bad, FAILED[provider])
            run_once(env)
            by_id = {b["model_id"]: b for b in _bodies(receiver) if b["status"] != "running"}
            assert by_id[good]["state"] == "ready"
            assert by_id[good]["fine_tuned_model"], by_id[good]
            assert by_id[good]["failure_message"] is None
            assert by_id[bad]["state"] == "failed"
            assert by_id[bad]["failure_message"], by_id[bad]
            assert by_id[bad]["fine_tuned_model"] is None


def test_three_sources_at_once_and_one_that_is_down_stops_no_other(
    clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("cohere") as cohere, world("openai") as openai, world("bedrock") as bedrock:
        apis = (cohere, openai, bedrock)
        jobs = {api.provider: api.add(f"{api.provider}-job") for api in apis}
        env = clean_env | {"FTWATCH_SOURCES": json.dumps([api.source() for api in apis])}
        for api in apis:
            env |= api.credentials(tmp_path)
        env = hook_env(env, receiver)
        run_once(env)
        for api in apis:
            api.move(jobs[api.provider], LIFECYCLES[api.provider][1])
        openai.sim.inject(Fault("503"), times=50)  # down for this whole run
        done = run_here(["run", "--once"], env)
        # The others delivered; a cron job still hears that one source was not polled.
        assert done.returncode == 1, done.stderr
        assert "could not poll 1 of the sources (openai:" in done.stderr
        assert "source.failed" in done.stderr
        assert {b["provider"] for b in _bodies(receiver)} == {"cohere", "bedrock"}

        openai.sim.clear_faults()
        run_once(env)  # back: its change comes now, nothing else again
        assert sorted(b["provider"] for b in _bodies(receiver)) == ["bedrock", "cohere", "openai"]

        status = run_cli(["status", "--json"], env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["models"] == {"cohere": 1, "openai": 1, "bedrock": 1}


def test_a_filter_takes_a_provider_word_or_a_normalized_state(
    clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as openai, world("bedrock") as bedrock:
        jobs = {api.provider: api.add("f") for api in (openai, bedrock)}
        env = clean_env | {"FTWATCH_SOURCES": json.dumps([openai.source(), bedrock.source()])}
        env |= openai.credentials(tmp_path) | bedrock.credentials(tmp_path)
        notifiers = [
            {"type": "webhook", "url": receiver.url + "/ready", "name": "ready", "statuses": ["ready"]},
            {"type": "webhook", "url": receiver.url + "/word", "name": "word", "statuses": ["succeeded"]},
        ]
        env["FTWATCH_NOTIFIERS"] = json.dumps(notifiers)
        run_here(["run", "--once"], env)
        openai.move(jobs["openai"], "running")
        openai.move(jobs["openai"], "succeeded")
        bedrock.move(jobs["bedrock"], "Completed")
        run_once(env)
        got: Callable[[str], list[str]] = lambda path: sorted(  # noqa: E731
            r.json()["status"] for r in receiver.received if r.path.endswith(path)
        )
        assert got("/ready") == ["Completed", "succeeded"]
        assert got("/word") == ["succeeded"]


def test_moving_cohere_into_sources_keeps_its_state(
    clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("cohere") as cohere:
        model = cohere.add("kept", "STATUS_QUEUED")
        legacy = hook_env(clean_env | {"CO_API_KEY": "sim-key", "CO_API_URL": cohere.sim.url}, receiver)
        run_once(legacy)
        cohere.move(model, "STATUS_FINETUNING")
        run_once(legacy)
        sourced = hook_env(clean_env | {"CO_API_KEY": "sim-key"}, receiver)
        sourced["FTWATCH_SOURCES"] = json.dumps([cohere.source()])
        run_once(sourced)  # the same rows: no second baseline, nothing sent again
        cohere.move(model, "STATUS_READY")
        run_once(sourced)
        assert [b["status"] for b in _bodies(receiver)] == ["STATUS_FINETUNING", "STATUS_READY"]


def test_a_429_holds_back_every_request_of_that_api_for_its_retry_after(
    api: World, clean_env: dict[str, str], tmp_path: Path
) -> None:
    for index in range(3):
        api.add(f"m{index}")
    api.server.inject(Fault("429", endpoint="list_models", retry_after_s=1.0))
    done = run_cli(["models", "--json"], api.env(clean_env, tmp_path))
    assert done.returncode == 0, done.stderr
    times = [r.at for r in api.server.requests]
    refused = next(i for i, r in enumerate(api.server.requests) if r.code == 429)
    assert times[refused + 1] - times[refused] >= 0.95  # the API said one second, and got it


@pytest.mark.parametrize("provider", ["openai", "bedrock"])
def test_one_unreadable_job_is_that_jobs_problem_only(
    provider: str, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world(provider) as api:
        good, odd = api.add("good"), api.add("odd")
        env = hook_env(api.env(clean_env, tmp_path), receiver)
        run_once(env)
        api.sim.override(odd, status=7)  # a number where a word belongs
        api.move(good, LIFECYCLES[provider][-1])
        done = run_here(["run", "--once"], env)
        assert done.returncode == 0, done.stderr
        assert "model.failed" in done.stderr
        assert [b["model_id"] for b in _bodies(receiver)] == [good]


def test_a_list_that_repeats_its_cursor_is_an_error_not_a_loop(clean_env: dict[str, str], tmp_path: Path) -> None:
    with world("openai") as api:
        api.add("a")
        api.add("b")
        # A broken page: has_more with the same last id every time.
        api.sim.override(api.ids["a"], id=api.ids["b"])
        api.sim.force_has_more = True
        done = run_cli(["models"], api.env(clean_env, tmp_path), timeout=30)
        assert done.returncode == 1, done.stderr
        assert "has_more" in done.stderr
        assert "Traceback" not in done.stderr


def test_check_config_shows_each_source_with_its_secrets_hidden(clean_env: dict[str, str], tmp_path: Path) -> None:
    secret = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
    with world("openai") as api:
        env = api.env(clean_env, tmp_path, webhook={"secret": secret}, organization="org-1")
        done = run_here(["check-config"], env)
        assert done.returncode == 0, done.stderr
        shown = json.loads(done.stdout)
        assert shown["sources"][0]["type"] == "openai"
        assert shown["sources"][0]["organization"] == "org-1"
        assert secret not in done.stdout + done.stderr
        assert "sk-sim-openai" not in done.stdout + done.stderr


def test_two_sources_of_one_name_are_refused_in_one_line(clean_env: dict[str, str]) -> None:
    env = clean_env | {"FTWATCH_SOURCES": json.dumps([{"type": "openai"}, {"type": "openai"}])}
    done = run_here(["check-config"], env)
    assert done.returncode == 2
    assert "a second source named 'openai'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_stall_alert_names_the_provider_and_its_state(
    api: World, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    running = {
        "cohere": "STATUS_FINETUNING",
        "openai": "running",
        "azure_openai": "running",
        "bedrock": "InProgress",
        "together": "running",
        "fireworks": "JOB_STATE_RUNNING",
        "vertex": "JOB_STATE_RUNNING",
    }[api.provider]
    api.add("slow", running)
    env = hook_env(api.env(clean_env, tmp_path), receiver) | {"FTWATCH_STALL__AFTER": '{"running": "1s"}'}
    run_once(env)
    time.sleep(1.2)  # past the threshold: the stay itself must last
    run_once(env)
    run_once(env)  # once per stay
    stalls = [b for b in _bodies(receiver) if b["type"] == "finetuned_model.stalled"]
    assert [(s["provider"], s["status"], s["state"]) for s in stalls] == [(api.provider, running, "running")]


def test_wait_until_ready_knows_each_providers_words(api: World, clean_env: dict[str, str], tmp_path: Path) -> None:
    ready = LIFECYCLES[api.provider][-1]
    job = api.add("awaited", LIFECYCLES[api.provider][0])
    env = api.env(clean_env, tmp_path)
    args = [
        *FTWATCH,
        "wait",
        job,
        "--until",
        "ready",
        "--interval",
        "0.2",
        "--timeout",
        "30s",
        "--source",
        api.provider,
    ]
    waiting = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: api.server.count() >= 3, what="polling")
        api.move(job, ready)
        _, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err
    assert "ready" in err


def test_a_failed_source_is_down_in_the_metrics_and_no_model_failure() -> None:
    metrics = Metrics("test")
    result = CycleFindings(
        [], 2, 0, False, failed={"source:openai": "HTTP 503"}, sources={"cohere": True, "openai": False}
    )
    metrics.cycle_done(Polled(result, 0.1, 3))
    text = generate_latest(metrics.registry).decode()
    assert 'ftwatch_source_up{source="cohere"} 1.0' in text
    assert 'ftwatch_source_up{source="openai"} 0.0' in text
    assert "ftwatch_model_failures_total{" not in text
    metrics.cycle_done(Standby())  # a standby shows none
    assert "ftwatch_source_up{" not in generate_latest(metrics.registry).decode()


def test_slack_and_text_lines_say_a_failure_and_its_reason_escaped() -> None:
    failed = Transition(
        "ftw_x",
        "ftjob-1",
        "bot",
        "failed",
        "running",
        "2026-12-01T00:00:00Z",
        None,
        "2026-12-01T00:00:01Z",
        provider="openai",
        source="openai",
        failure_message="bad <!channel> file\nline two",
    )
    message = slack_message(failed)
    assert message["blocks"][0]["text"]["text"].startswith(":x: *bot* *failed* (was running)")
    assert "&lt;!channel&gt;" in message["text"]
    assert "<!channel>" not in json.dumps(message)
    assert text_line(failed).endswith("running -> failed: bad <!channel> file line two")
    stopped = replace(failed, status="Stopped", provider="bedrock", failure_message=None)
    assert slack_message(stopped)["blocks"][0]["text"]["text"].startswith(":no_entry_sign:")
