"""Never silent, never stuck: odd clocks, bad data, stalled pipes, locked files, hostile input.

Each test names the item of the "never silent, never stuck" issue it covers.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ftwatch.sim.cohere import CohereSimulator, Fault
from ftwatch.store.base import CycleCommit
from ftwatch.store.sqlite import SCHEMA_VERSION

from .conftest import (
    Daemon,
    baselined,
    finetuned_once,
    free_port,
    hook_env,
    moved_after_baseline,
    notifiers_env,
    ready_after_baseline,
    run_cli,
    run_here,
    run_once,
    source_for,
    wait_for,
)
from .receiver import Answer, Receiver

SECOND = 1_000_000_000


def _env_for(sim: CohereSimulator, base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "CO_API_URL": sim.url}


# --- 1. clocks that disagree ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "configured"),
    [("auto", False), ("list", True), ("events", False), ("auto", True)],
    ids=["all-models", "list-configured", "events-mode", "per-model"],
)
@pytest.mark.parametrize("clock", ["coarse", "lagging"])
def test_baselines_hold_when_updated_at_is_coarse_or_lags(
    sim_factory: Callable[..., CohereSimulator],
    receiver: Receiver,
    base_env: dict[str, str],
    mode: str,
    configured: bool,
    clock: str,
) -> None:
    """Item 1: updated_at in microseconds, or up to a second behind the event: the
    first start reports nothing, and a later change exactly once, never X -> X."""
    sim = sim_factory(**({"coarse_updated_at": True} if clock == "coarse" else {"updated_at_lag_s": 0.9}))
    a = sim.add_model("a", "STATUS_FINETUNING", history=("STATUS_QUEUED",))
    b = sim.add_model("b", "STATUS_READY", history=("STATUS_QUEUED",))
    env = hook_env(_env_for(sim, base_env), receiver)
    env["FTWATCH_POLL__MODE"] = mode
    if configured:
        env["FTWATCH_POLL__MODELS"] = json.dumps([a] if mode == "auto" else [a, b])
    finetuned_once(sim, a, env, receiver)


# --- 2. late events -------------------------------------------------------------------------------


def test_a_late_event_is_sent_once(sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]) -> None:
    """Item 2: an event stamped before the newest one (inside the look-back) is sent once."""
    model = sim.add_model("m", "STATUS_FINETUNING", history=("STATUS_QUEUED",))
    env = baselined(base_env, receiver)
    later = time.time_ns() + 20 * SECOND
    sim.set_status(model, "STATUS_DEPLOYING_API", at_ns=later)
    run_once(env)
    # Written now, stamped 10 s before the newest event: between FINETUNING and DEPLOYING.
    sim.set_status(model, "STATUS_PAUSED", at_ns=later - 10 * SECOND)
    run_once(env)
    run_once(env)
    assert receiver.steps() == [
        ("STATUS_FINETUNING", "STATUS_DEPLOYING_API"),
        ("STATUS_FINETUNING", "STATUS_PAUSED"),
    ]


# --- 3. undated events ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [{"status": "STATUS_FAILED"}, {"status": "STATUS_FAILED", "created_at": ""}])
def test_an_event_without_created_at_is_reported_once(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], raw: dict[str, str]
) -> None:
    """Item 3: no (or an empty) created_at: reported once, at the time first seen."""
    model, env = moved_after_baseline(sim, base_env, receiver, "STATUS_QUEUED", "STATUS_FINETUNING")
    run_once(env)
    before = time.time()
    sim.add_raw_event(model, raw, status="STATUS_FAILED")
    run_once(env)
    run_once(env)
    [_, body] = receiver.bodies()
    assert (body["previous_status"], body["status"]) == ("STATUS_FINETUNING", "STATUS_FAILED")
    occurred = time.mktime(time.strptime(body["occurred_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert occurred >= before - 2


# --- 4. watch never consumes the daemon's transitions ---------------------------------------------


def test_watch_with_the_daemon_state_path_does_not_consume_transitions(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Item 4: `watch --once` on the daemon's [state] path leaves its cursors alone."""
    _, env = moved_after_baseline(sim, base_env, receiver, "STATUS_FINETUNING", "STATUS_READY")
    watched = run_cli(["watch", "--once"], env)
    assert watched.returncode == 0, watched.stderr
    run_once(env)
    assert [b["status"] for b in receiver.bodies()] == ["STATUS_READY"]


# --- 5. a wider watch is a baseline, not new jobs -------------------------------------------------


def test_switching_from_listed_models_to_all_sends_no_history(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Item 5: models that enter the watch by a config change are a baseline; models
    that appear in the API afterwards are new jobs."""
    a = sim.add_model("a", "STATUS_READY", history=("STATUS_QUEUED",))
    b = sim.add_model("b", "STATUS_READY", history=("STATUS_QUEUED", "STATUS_FINETUNING"))
    env = hook_env(base_env, receiver)
    run_once({**env, "FTWATCH_POLL__MODELS": json.dumps([a])})
    run_once(env)  # now every model: b is history
    assert receiver.bodies() == []
    c = sim.add_model("c", "STATUS_QUEUED")
    sim.set_status(b, "STATUS_DELETED")
    run_once(env)
    got = {(x["model_id"], x["status"]) for x in receiver.bodies()}
    assert got == {(c, "STATUS_QUEUED"), (b, "STATUS_DELETED")}


# --- 6. one model's failure is that model's only --------------------------------------------------


def test_one_failing_model_does_not_stop_the_others(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Item 6: a model whose events endpoint keeps failing is retried; the others deliver."""
    bad = sim.add_model("bad", "STATUS_FINETUNING")
    good = sim.add_model("good", "STATUS_FINETUNING")
    env = {**baselined(base_env, receiver), "FTWATCH_COHERE__MAX_ATTEMPTS": "2"}
    sim.inject(Fault("500", endpoint="list_events", model_id=bad), times=1000)
    sim.set_status(bad, "STATUS_READY")
    sim.set_status(good, "STATUS_READY")
    done = run_once(env)
    assert [(b["model_id"], b["status"]) for b in receiver.bodies()] == [(good, "STATUS_READY")]
    failed = [json.loads(line) for line in done.stderr.splitlines() if '"model.failed"' in line]
    assert len(failed) == 1
    assert failed[0]["model_id"] == bad
    with sim._lock:
        sim._faults.clear()
    run_once(env)
    assert {(b["model_id"], b["status"]) for b in receiver.bodies()} == {(good, "STATUS_READY"), (bad, "STATUS_READY")}


@pytest.mark.parametrize(
    "form",
    ["%Y-%m-%dT%H:%M:%S.1234567891234Z", "%Y-%m-%dT%H:%M:%S.5+0000", "%Y-%m-%dt%H:%M:%S.5z", "%Y-%m-%dT23:59:60Z"],
)
def test_unusual_rfc3339_timestamps_are_read(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], form: str
) -> None:
    """Item 6: 10+ fractional digits, +0000, lowercase z and a leap second are events like any."""
    odd = sim.add_model("odd", "STATUS_QUEUED")
    other = sim.add_model("other", "STATUS_QUEUED")
    env = hook_env(base_env, receiver)
    run_once(env)
    # Tomorrow: later than the history, whatever day the test runs.
    stamp = time.strftime(form, time.gmtime(time.time() + 86_400))
    sim.add_raw_event(odd, {"status": "STATUS_FAILED", "created_at": stamp}, status="STATUS_FAILED")
    sim.set_status(other, "STATUS_READY")
    run_once(env)
    assert {(b["model_id"], b["status"]) for b in receiver.bodies()} == {
        (other, "STATUS_READY"),
        (odd, "STATUS_FAILED"),
    }


def test_wrong_field_types_are_bad_input_for_that_model_only(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Item 6: a list name in the model list, a number user_id in an event: those
    models fail (logged once), the others are reported."""
    listed = sim.add_model("listed", "STATUS_QUEUED")
    typed = sim.add_model("typed", "STATUS_QUEUED")
    fine = sim.add_model("fine", "STATUS_QUEUED")
    env = baselined(base_env, receiver)
    sim.override(listed, name=["not", "a", "string"])
    sim.add_raw_event(typed, {"status": "STATUS_READY", "created_at": "2026-11-01T12:00:04Z", "user_id": 42})
    sim.set_status(typed, "STATUS_READY")
    sim.set_status(listed, "STATUS_READY")
    sim.set_status(fine, "STATUS_READY")
    done = run_once(env)
    assert [(b["model_id"], b["status"]) for b in receiver.bodies()] == [(fine, "STATUS_READY")]
    failed = {json.loads(line)["model_id"] for line in done.stderr.splitlines() if '"model.failed"' in line}
    assert failed == {listed, typed}


# --- 7. a stalled stdout --------------------------------------------------------------------------


def test_a_stalled_stdout_blocks_neither_the_loop_nor_other_notifiers(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """Item 7: nobody reads the daemon's stdout (the pipe fills); the webhook still gets
    every transition and /healthz still answers."""
    port = free_port()
    long_name = "x" * 4000  # about 16 lines fill a 64 KiB pipe
    models = [sim.add_model(f"{long_name}-{i}", "STATUS_QUEUED") for i in range(40)]
    env = {
        **base_env,
        "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
        **notifiers_env({"type": "stdout"}, {"type": "webhook", "url": receiver.url}),
    }
    daemon = daemons(env)
    daemon.wait_log('"poll.cycle"')
    for model in models:
        sim.set_status(model, "STATUS_READY")
    wait_for(lambda: len(receiver.bodies()) == len(models), timeout=30, what="every webhook delivery")
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert daemon.stop() == 0  # reads the pipe, which lets the stdout notifier finish


# --- 8. a locked state file, a failed commit ------------------------------------------------------


def test_a_locked_state_file_loses_and_repeats_nothing(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Item 8: another client holds the write lock for 2 s right after a delivery: the
    daemon logs, retries, stays up, and the delivery is never sent again."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {**hook_env(base_env, receiver), "FTWATCH_STATE__BUSY_TIMEOUT_S": "0.2"}
    daemon = daemons(env)
    daemon.wait_log('"poll.cycle"')
    state = tmp_path / "state.db"

    def hold_the_lock(_: object) -> None:
        receiver.on_post = None
        other = sqlite3.connect(state, timeout=5, check_same_thread=False)
        other.execute("BEGIN EXCLUSIVE")
        threading.Timer(2.0, lambda: (other.rollback(), other.close())).start()

    receiver.on_post = hold_the_lock
    sim.set_status(model, "STATUS_FINETUNING")
    daemon.wait_log('"store.failed"', timeout=20)
    sim.set_status(model, "STATUS_READY")
    wait_for(lambda: len(receiver.bodies()) == 2, timeout=20, what="both deliveries")
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0
    again = daemons(env | {"FTWATCH_LOG_LEVEL": "debug"})  # quiet cycles are logged at debug
    again.wait_log('"poll.cycle"', count=2)
    assert again.stop() == 0
    assert [b["status"] for b in receiver.bodies()] == ["STATUS_FINETUNING", "STATUS_READY"]


def test_a_failed_commit_rolls_back_and_the_store_goes_on(tmp_path: Path) -> None:
    """Item 8: a COMMIT that fails (the file is full) rolls back; the next one works."""
    from ftwatch.diff import Cursor  # noqa: PLC0415
    from ftwatch.model import Transition  # noqa: PLC0415
    from ftwatch.outbox import Route  # noqa: PLC0415
    from ftwatch.store import ModelState, StoreError  # noqa: PLC0415
    from ftwatch.store.sqlite import SqliteStore  # noqa: PLC0415

    store = SqliteStore(tmp_path / "state.db")
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # a disk that is full
    big = [
        Transition(f"id-{i}", "ft-1", "m" * 2000, "STATUS_READY", None, "2026-01-01T00:00:00Z", None, "x")
        for i in range(50)
    ]
    state = {"ft-1": ModelState(Cursor(1, frozenset(), "STATUS_READY"), "m")}
    with pytest.raises(StoreError, match="full"):
        store.commit_cycle(CycleCommit.of(state, big, [Route("hook")], now=0.0))
    assert store.load_models() == {}
    store._db.execute("PRAGMA max_page_count = 1000000")
    assert store.commit_cycle(CycleCommit.of(state, big, [Route("hook")], now=0.0)) == 50
    assert "ft-1" in store.load_models()
    store.close()


# --- 9. a long Retry-After ------------------------------------------------------------------------


def test_a_long_retry_after_is_capped_and_shown(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """Item 9: the API asks for 600 s; ftwatch waits the cap (1 s), says so in /readyz, delivers."""
    port = free_port()
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {
        **hook_env(base_env, receiver),
        "FTWATCH_COHERE__MAX_RETRY_AFTER_S": "3",
        "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
    }
    daemon = daemons(env)
    daemon.wait_log('"poll.cycle"')
    sim.inject(Fault("429", endpoint="list_models", retry_after_s=600))
    sim.set_status(model, "STATUS_READY")
    ready = wait_for(
        lambda: "waiting" in (r := httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).text) and r, what="wait"
    )
    assert "600" in ready
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    wait_for(receiver.bodies, timeout=15, what="the delivery after the capped wait")
    assert daemon.stop() == 0


def test_a_deliberate_wait_keeps_the_loop_alive() -> None:
    """Item 9: a wait longer than the stuck threshold is alive; silence past it is not."""
    from ftwatch.ops.health import Health  # noqa: PLC0415

    now = [0.0]
    health = Health(30.0, clock=lambda: now[0])
    health.waiting(600.0, "the API asked to retry after 600s")
    now[0] = 500.0
    assert health.alive()
    assert "waiting 100s" in health.ready()[1]
    now[0] = 600.0 + health.stuck_after_s + 1
    assert not health.alive()


# --- 10. a gzip body that does not decode ---------------------------------------------------------


@pytest.mark.anyio
async def test_a_body_that_fails_to_decode_is_one_failed_request(sim: CohereSimulator) -> None:
    """Item 10: httpx's DecodingError (not a transport error) is retried like any fault."""
    sim.add_model("m", "STATUS_READY")
    sim.inject(Fault("badgzip"), times=2)
    async with httpx.AsyncClient() as http:
        listing = await source_for(sim, http).list_models()
    assert [m.name for m in listing.models] == ["m"]
    assert sim.pending_faults() == 0


# --- 11, 14. deliveries that cannot succeed -------------------------------------------------------


def test_a_header_http_cannot_carry_is_a_dead_letter_at_once(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Item 11: a template that renders a non-ASCII header value: dead letter, the next goes out."""
    accented = sim.add_model("modèle-ü", "STATUS_QUEUED")
    plain = sim.add_model("plain", "STATUS_QUEUED")
    env = hook_env(base_env, receiver, headers={"X-Model": "{{ model }}"})
    run_once(env)
    sim.set_status(accented, "STATUS_READY")
    sim.set_status(plain, "STATUS_READY")
    done = run_once(env)
    assert [b["model_id"] for b in receiver.bodies()] == [plain]
    assert '"notify.dead_letter"' in done.stderr


@pytest.mark.parametrize(
    ("notifier", "message"),
    [
        ({"type": "webhook", "url": "http://127.0.0.1:9/x", "headers": {"X Bad": "v"}}, "field name"),
        ({"type": "webhook", "url": "http://127.0.0.1:9/x", "headers": {"X-Evil": "a\nb"}}, "line-break"),
        ({"type": "webhook", "url_file": "URL_FILE"}, "http:// or https://"),
        ({"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "whsec_"}, "is empty"),
    ],
)
def test_check_config_refuses_what_can_never_be_sent(
    base_env: dict[str, str], tmp_path: Path, notifier: dict[str, object], message: str
) -> None:
    """Items 11 and 17: invalid header names or values, a url_file of another scheme, an
    empty signing secret: exit 2 at load, one line."""
    url_file = tmp_path / "url"
    url_file.write_text("ftp://example.com/hook\n")
    notifier = {k: (str(url_file) if v == "URL_FILE" else v) for k, v in notifier.items()}
    done = run_here(["check-config"], {**base_env, **notifiers_env(notifier)})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_a_redirect_is_a_dead_letter_that_names_where_it_points(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Item 14: 3xx is not followed (decided); the log names the new host, never its path."""
    _, env = moved_after_baseline(sim, base_env, receiver, "STATUS_QUEUED", "STATUS_READY")
    receiver.default = Answer(302, headers={"location": "https://moved.example/hook?token=s3cret"})
    done = run_once(env)
    dead = [json.loads(line) for line in done.stderr.splitlines() if '"notify.dead_letter"' in line]
    assert len(dead) == 1
    assert "https://moved.example" in dead[0]["error"]
    assert "s3cret" not in done.stderr


# --- 12. Apprise with several URLs ----------------------------------------------------------------


def test_apprise_retries_only_the_urls_that_failed(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """Item 12: one failing URL of two: the healthy one gets the transition once."""
    pytest.importorskip("apprise")
    healthy, flaky = Receiver().start(), Receiver().start()
    try:
        flaky.answer(Answer(500), Answer(500), Answer(500))
        model = sim.add_model("m", "STATUS_QUEUED")
        urls = [f"json://127.0.0.1:{healthy.port}/a", f"json://127.0.0.1:{flaky.port}/b"]
        env = {**base_env, **notifiers_env({"type": "apprise", "urls": urls})}
        run_once(env)
        sim.set_status(model, "STATUS_READY")
        daemon = Daemon(env)
        try:
            wait_for(lambda: flaky.received, timeout=20, what="the flaky URL to succeed")
        finally:
            assert daemon.stop() == 0
        assert len(healthy.attempts) == 1
        assert len(flaky.attempts) == 4
    finally:
        healthy.stop()
        flaky.stop()


# --- 13. reloads ----------------------------------------------------------------------------------


def test_reload_orphans_a_removed_notifiers_queue_and_names_what_needs_a_restart(
    sim: CohereSimulator, base_env: dict[str, str], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Item 13: a removed notifier's queue shows as orphaned (not pending); [delivery]
    and log_level apply live; a [cohere] change is named as needing a restart."""
    down, up = Receiver().start(), Receiver().start()
    try:
        down.default = Answer(503)
        port = free_port()
        config = tmp_path / "ftwatch.toml"

        def write(timeout_s: float, notifiers: list[Receiver]) -> None:
            tables = "".join(
                f'[[notifiers]]\ntype = "webhook"\nurl = "{r.url}"\nname = "n{r.port}"\n' for r in notifiers
            )
            config.write_text(f"[cohere]\ntimeout_s = {timeout_s}\n[delivery]\nretry_max_s = 0.2\n{tables}")

        write(10.0, [down, up])
        model = sim.add_model("m", "STATUS_QUEUED")
        env = {k: v for k, v in base_env.items() if k != "FTWATCH_DELIVERY__RETRY_MAX_S"}
        env |= {"FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}", "FTWATCH_CONFIG": str(config)}
        daemon = daemons(env)
        daemon.wait_log('"poll.cycle"')
        sim.set_status(model, "STATUS_READY")
        wait_for(lambda: up.received and down.attempts, what="one delivered, one failing")
        write(20.0, [up])
        config.write_text(config.read_text().replace("retry_max_s = 0.2", "retry_max_s = 0.3"))
        daemon.send(signal.SIGHUP)
        daemon.wait_log('"reload.done"')

        def metric(name: str) -> float:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))

        wait_for(lambda: metric("ftwatch_outbox_orphaned") == 1.0, what="the orphaned gauge")
        assert metric("ftwatch_outbox_pending") == 0.0
        daemon.wait_log('"outbox.orphaned"')
        restart = next(json.loads(x) for x in daemon.stderr.splitlines() if '"reload.restart_needed"' in x)
        assert restart["keys"] == ["cohere.timeout_s"]
        done = next(json.loads(x) for x in daemon.stderr.splitlines() if '"reload.done"' in x)
        assert "delivery.retry_max_s" in done["applied"]
        assert "notifiers" in done["applied"]
        assert daemon.stop() == 0
    finally:
        down.stop()
        up.stop()


# --- 15. secrets in check-config ------------------------------------------------------------------


def test_check_config_redacts_apprise_tokens_and_header_values(base_env: dict[str, str]) -> None:
    """Item 15: tgram://BOT-TOKEN/… keeps only its scheme; header values are hidden whole."""
    pytest.importorskip("apprise")
    notifiers = notifiers_env(
        {"type": "apprise", "urls": ["tgram://123456789:BOTTOKENabcdef/12345", "json://user:pw@hooks.example/x"]},
        {"type": "webhook", "url": "https://user:pa55@hooks.example/p?k=v", "headers": {"Authorization": "Bearer sek"}},
    )
    done = run_here(["check-config"], {**base_env, **notifiers})
    assert done.returncode == 0, done.stderr
    for secret in ("BOTTOKEN", "123456789", "pw@", "pa55", "Bearer", "sek", "k=v"):
        assert secret not in done.stdout
    report = json.loads(done.stdout)
    assert report["notifiers"][0]["urls"][0] == "tgram://**********"
    assert report["notifiers"][1]["headers"] == {"Authorization": "**********"}
    assert report["notifiers"][1]["url"] == "https://hooks.example/**********"


# --- 16. ids are one path segment -----------------------------------------------------------------


def test_a_model_id_cannot_reach_another_path_of_the_api(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """Item 16: '../../admin/x?y=' is refused (exit 2) before any request; odd characters are escaped."""
    done = run_cli(["events", "../../admin/x?y="], base_env)
    assert done.returncode == 2, done.stderr
    assert "one path segment" in done.stderr
    escaped = run_cli(["events", "a?b#c%d"], base_env)
    assert escaped.returncode == 2  # an id that names nothing: 2, as for wait and outbox replay
    assert "not found" in escaped.stderr
    assert sim.stray_paths == []
    configured = run_here(["check-config"], {**base_env, "FTWATCH_POLL__MODELS": '["../x"]'})
    assert configured.returncode == 2


# --- 17. templates that never end -----------------------------------------------------------------


def test_a_template_that_never_ends_fails_check_config_quickly(base_env: dict[str, str]) -> None:
    """Item 17: nested loops that would run for hours are refused within seconds."""
    loop = "{% for i in range(999) %}"
    loops = loop * 3 + "{% endfor %}" * 3
    started = time.monotonic()
    done = run_here(["check-config"], {**base_env, **notifiers_env({"type": "stdout", "template": loops})})
    assert done.returncode == 2
    assert "template" in done.stderr
    assert time.monotonic() - started < 15


# --- 18. Slack escaping ---------------------------------------------------------------------------


def test_slack_text_escapes_what_the_api_says(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Item 18: a model named '<!channel> & <https://evil|x>' reaches Slack as plain text."""
    env = {**base_env, **notifiers_env({"type": "slack", "webhook_url": receiver.url})}
    ready_after_baseline(sim, "<!channel> & <https://evil|x>", env)
    [body] = receiver.bodies()
    text = json.dumps(body)
    assert "<!channel>" not in text
    assert "<https://evil" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil|x&gt;" in body["text"]


# --- 19. private files ----------------------------------------------------------------------------


def test_the_state_file_and_its_lock_are_private(
    sim: CohereSimulator, base_env: dict[str, str], tmp_path: Path
) -> None:
    """Item 19: created 0600, whatever the umask."""
    os.umask(0o022)
    run_once(base_env)
    for name in ("state.db", "state.db.lock"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"


# --- 20. a key caught mid-rotation ----------------------------------------------------------------


def test_a_key_rotating_in_place_is_waited_for(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Item 20: the key file is empty for a moment and the API refuses for a second:
    ftwatch reads it again until the new key works, and goes on."""
    key_file = tmp_path / "key"
    key_file.write_text("old-key\n")
    sim.keys = {"old-key"}
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {k: v for k, v in hook_env(base_env, receiver).items() if k != "CO_API_KEY"}
    env["FTWATCH_COHERE__API_KEY_FILE"] = str(key_file)
    daemon = daemons(env)
    daemon.wait_log('"poll.cycle"')
    sim.keys = {"new-key"}
    key_file.write_text("")  # caught in the middle of the rewrite
    daemon.wait_log('"api.key_refused"')
    time.sleep(1.0)
    key_file.write_text("new-key\n")
    sim.set_status(model, "STATUS_READY")
    wait_for(receiver.bodies, timeout=20, what="the delivery with the new key")
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0


@pytest.mark.parametrize("content", ["\ufeffkey-with-bom", "clé"])
def test_a_key_with_a_bom_or_non_ascii_bytes_is_a_config_error(
    base_env: dict[str, str], tmp_path: Path, content: str
) -> None:
    """Item 20: said in one line (exit 2), without echoing the key."""
    key_file = tmp_path / "key"
    key_file.write_text(content, encoding="utf-8")
    env = {k: v for k, v in base_env.items() if k != "CO_API_KEY"}
    done = run_here(["run", "--once"], {**env, "FTWATCH_COHERE__API_KEY_FILE": str(key_file)})
    assert done.returncode == 2
    assert "plain ASCII" in done.stderr
    assert content.lstrip("\ufeff") not in done.stderr


# --- 21. schema versions --------------------------------------------------------------------------

_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (model_id TEXT PRIMARY KEY, name TEXT, at_ns INTEGER, seen TEXT NOT NULL, last_status TEXT,
    lazy INTEGER NOT NULL DEFAULT 0, list_status TEXT, list_updated TEXT);
CREATE TABLE transitions (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL);
CREATE TABLE deliveries (transition_id TEXT NOT NULL REFERENCES transitions (id), notifier TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, last_error TEXT, PRIMARY KEY (notifier, transition_id));
INSERT INTO meta VALUES ('baselined', '1');
"""


def test_a_state_file_of_the_first_build_is_migrated_forward(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], tmp_path: Path
) -> None:
    """Item 21: the unnumbered first schema gains its columns; its cursors still hold."""
    model = sim.add_model("m", "STATUS_FINETUNING", history=("STATUS_QUEUED",))
    last = sim.model(model).events[-1]
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript(_V1_SCHEMA)
    db.execute(
        "INSERT INTO models VALUES (?, 'm', ?, ?, 'STATUS_FINETUNING', 0, 'STATUS_FINETUNING', NULL)",
        (model, last.created_at_ns, json.dumps([["STATUS_FINETUNING", "", 0]])),
    )
    db.commit()
    db.close()
    env = hook_env(base_env, receiver)
    run_once(env)
    assert receiver.bodies() == []  # the old cursor still covers the history
    sim.set_status(model, "STATUS_READY")
    run_once(env)
    assert [b["status"] for b in receiver.bodies()] == ["STATUS_READY"]
    assert sqlite3.connect(tmp_path / "state.db").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_state_file_of_a_newer_build_is_refused(base_env: dict[str, str], tmp_path: Path) -> None:
    """Item 21: a schema newer than this build: exit 2, one line, nothing changed."""
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript("CREATE TABLE models (model_id TEXT PRIMARY KEY, renamed TEXT); PRAGMA user_version = 99;")
    db.close()
    done = run_here(["run", "--once"], base_env)
    assert done.returncode == 2, done.stderr
    assert "schema version 99" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert sqlite3.connect(tmp_path / "state.db").execute("PRAGMA user_version").fetchone()[0] == 99


def test_migrate_brings_an_old_state_file_forward(base_env: dict[str, str], tmp_path: Path) -> None:
    """`ftwatch migrate` migrates the first build's file and says the version it is at."""
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript(_V1_SCHEMA)
    db.close()
    done = run_cli(["migrate"], base_env)
    assert done.returncode == 0, done.stderr
    assert f"schema version {SCHEMA_VERSION}" in done.stderr
