"""The operator's side: the outbox seen, replayed and purged through the CLI, status,
retention; on SQLite and on PostgreSQL, beside a running daemon."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from ftwatch.diff import Cursor
from ftwatch.model import Transition, format_timestamp
from ftwatch.outbox import DeliveryState, Failure, RetryPolicy, Route, after_failure, after_success
from ftwatch.sim.cohere import CohereSimulator
from ftwatch.store._sql import OutboxSql
from ftwatch.store.base import CycleCommit, ModelState, Store

from .conftest import Daemon, hook_env, ready_after_baseline, run_cli, run_once, wait_for
from .receiver import Answer, Receiver
from .rows import head_of
from .rows import transition as _transition


@pytest.fixture(params=["sqlite", "postgres"])
def state_env(request: pytest.FixtureRequest, base_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The base environment with its state on one backend."""
    if request.param == "sqlite":
        yield base_env
        return
    url = request.getfixturevalue("postgres_url")
    yield {**{k: v for k, v in base_env.items() if k != "FTWATCH_STATE__PATH"}, "FTWATCH_STATE__URL": url}


def _outbox(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    done = run_cli(["outbox", *args, "--json"], env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _paused(n: int) -> Transition:
    return _transition(n, model="m", previous="STATUS_PAUSED", prefix="ftw_")


def test_a_dead_letter_is_listed_replayed_into_the_running_daemon_and_purged(
    sim: CohereSimulator, receiver: Receiver, state_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """A receiver answers 400: the delivery is dead and `outbox --state dead` shows it
    with its error; `outbox replay --dead` while the daemon runs: sent within about a
    second, with the same id; `outbox purge` removes it; `status` counts along."""
    model = sim.add_model("classifier", "STATUS_FINETUNING")
    env = hook_env(state_env, receiver)
    run_once(env)  # the baseline
    receiver.answer(Answer(400, b'{"error": "bad payload"}'))
    daemon = daemons(env)
    sim.set_status(model, "STATUS_READY")
    wait_for(lambda: _outbox(env, "--state", "dead"), timeout=15, what="the dead letter")
    (dead,) = _outbox(env, "--state", "dead")
    assert dead["model_id"] == model
    assert dead["status"] == "STATUS_READY"
    assert dead["attempts"] == 1
    assert "400" in str(dead["last_error"])
    assert receiver.received == []
    table = run_cli(["outbox"], env)  # the plain table: pending and dead
    assert table.returncode == 0
    assert "TRANSITION" in table.stdout
    assert str(dead["id"]) in table.stdout

    status = json.loads(run_cli(["status", "--json"], env).stdout)
    assert status["notifiers"][dead["notifier"]]["dead"] == 1
    assert status["models"] == {"cohere": 1}
    assert status["last_poll_age_s"] < 30

    replayed = run_cli(["outbox", "replay", "--dead"], env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "re-queued 1 delivery"
    asked = time.monotonic()
    wait_for(receiver.bodies, timeout=5, what="the replayed delivery")
    assert time.monotonic() - asked < 2.5  # picked up at the next look, no restart
    assert [b["id"] for b in receiver.bodies()] == [dead["id"]]
    wait_for(lambda: _outbox(env, "--state", "delivered"), timeout=5, what="the delivered row")
    assert _outbox(env, "--state", "dead") == []

    purged = run_cli(["outbox", "purge", "--older-than", "0s"], env)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("removed 1 delivery")
    assert _outbox(env, "--state", "delivered") == []
    assert daemon.stop() == 0
    assert len(receiver.received) == 1


def test_outbox_commands_say_what_is_wrong_in_one_line(base_env: dict[str, str]) -> None:
    """No state yet, a bad duration, replay without a target: exit 2, one line each."""
    no_state = run_cli(["status"], base_env)
    assert no_state.returncode == 2
    assert "no state file" in no_state.stderr
    assert len(no_state.stderr.strip().splitlines()) == 1
    bad = run_cli(["outbox", "purge", "--older-than", "a while"], base_env)
    assert bad.returncode == 2
    assert "30d" in bad.stderr
    run_once(base_env)
    neither = run_cli(["outbox", "replay"], base_env)
    assert neither.returncode == 2
    assert "--dead" in neither.stderr
    assert len(neither.stderr.strip().splitlines()) == 1


def test_replay_purge_and_facts_on_every_backend(open_store: Callable[[], Store]) -> None:
    """Replay re-queues only dead letters (of the asked notifier and ids) with their
    attempts and clock reset; purge removes only finished rows older than asked, and
    the transitions left without deliveries; facts tell the last poll and models."""
    store = open_store()
    cursor = Cursor(1, frozenset(), "STATUS_READY")
    routes = [Route("a"), Route("b")]
    store.commit_cycle(
        CycleCommit.of(
            {"m": ModelState(cursor)},
            [_paused(1), _paused(2)],
            routes,
            1000.0,
            scope="all",
        )
    )
    policy = RetryPolicy()
    for notifier in ("a", "b"):
        head = head_of(store, notifier)
        assert head is not None
        store.save_delivery(after_failure(head[0], Failure("HTTP 400", permanent=True), 1001.0, policy))
    assert {r.transition.id for r in store.list_outbox(DeliveryState.DEAD)} == {"ftw_1"}
    assert store.replay(["ftw_1", "ftw_2"], "a", 5000.0) == 1  # ftw_2 is pending: not a dead letter
    (row,) = [r for r in store.list_outbox(DeliveryState.PENDING, "a") if r.transition.id == "ftw_1"]
    assert (row.attempts, row.last_error, row.created_at) == (0, None, 5000.0)
    assert store.replay(None, None, 5000.0) == 1  # b's dead letter
    assert store.list_outbox(DeliveryState.DEAD) == []

    for notifier in ("a", "b"):
        while (head := head_of(store, notifier)) is not None:
            store.save_delivery(after_success(head[0]))
    assert store.purge(2000.0) == 2  # ftw_2's two rows (queued at 1000); ftw_1 was re-queued at 5000
    assert {r.transition.id for r in store.list_outbox(DeliveryState.DELIVERED)} == {"ftw_1"}
    assert store.purge(6000.0, (DeliveryState.DELIVERED, DeliveryState.DEAD)) == 2
    assert store.list_outbox() == []
    facts = store.facts()
    assert facts.last_poll_at == 1000.0
    assert facts.models == {"": 1}


def test_retention_removes_old_delivered_rows_from_the_running_daemon(
    sim: CohereSimulator, receiver: Receiver, state_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """`[state] retention`: delivered rows older than it are removed by the daemon
    (soon after start, then hourly); younger ones and pending ones stay."""
    env = {**hook_env(state_env, receiver), "FTWATCH_STATE__RETENTION": "2s"}
    ready_after_baseline(sim, "m", env, "STATUS_FINETUNING")
    assert len(_outbox(env, "--state", "delivered")) == 1
    time.sleep(2.2)
    daemon = daemons(env)
    daemon.wait_log('"outbox.purged"', timeout=10)
    assert '"removed": 1' in daemon.stderr
    assert _outbox(env, "--state", "delivered") == []
    assert daemon.stop() == 0


@pytest.mark.parametrize("models", ["all", "listed"])
def test_catch_up_on_empty_state_reports_exactly_the_events_inside_the_window(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], models: str
) -> None:
    """`[poll] catch_up = "1h"`: a first start reports the events of the last hour
    (each once, with its previous status) and takes older ones as history; a model
    that did not move within the hour sends nothing; the next run sends nothing again."""
    hour_ns = 3_600 * 10**9
    now = time.time_ns()
    moved = sim.add_model("moved", "STATUS_QUEUED", created_at_ns=now - 3 * hour_ns)
    sim.set_status(moved, "STATUS_FINETUNING", at_ns=now - 2 * hour_ns)  # before the window
    sim.set_status(moved, "STATUS_DEPLOYING_API", at_ns=now - 30 * 60 * 10**9)  # inside
    sim.set_status(moved, "STATUS_READY", at_ns=now - 60 * 10**9)  # inside
    still = sim.add_model("still", "STATUS_QUEUED", created_at_ns=now - 4 * hour_ns)
    sim.set_status(still, "STATUS_READY", at_ns=now - 3 * hour_ns)
    env = {**hook_env(base_env, receiver), "FTWATCH_POLL__CATCH_UP": "1h"}
    if models == "listed":
        env["FTWATCH_POLL__MODELS"] = json.dumps([moved, still])
    run_once(env)
    assert [(b["model_id"], b["previous_status"], b["status"]) for b in receiver.bodies()] == [
        (moved, "STATUS_FINETUNING", "STATUS_DEPLOYING_API"),
        (moved, "STATUS_DEPLOYING_API", "STATUS_READY"),
    ]
    run_once(env)
    assert len(receiver.bodies()) == 2


def test_without_catch_up_an_empty_state_is_all_baseline(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """The default (0s) keeps today's behaviour: the first start sends nothing."""
    now = time.time_ns()
    model = sim.add_model("moved", "STATUS_QUEUED", created_at_ns=now - 3_600 * 10**9)
    sim.set_status(model, "STATUS_READY", at_ns=now - 60 * 10**9)
    run_once(hook_env(base_env, receiver))
    assert receiver.bodies() == []


def test_a_stall_alert_fires_once_per_stay_across_restarts(
    sim: CohereSimulator, receiver: Receiver, state_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """`[stall] after = {running = "2s"}`: a model fine-tuning longer than that gets one
    `finetuned_model.stalled` with the right `since`; a restart sends no second one;
    the next transition starts a new stay, which alerts again."""
    model = sim.add_model("slow", "STATUS_FINETUNING", history=("STATUS_QUEUED",))
    entered = sim.model(model).events[-1].created_at_ns
    env = {**hook_env(state_env, receiver), "FTWATCH_STALL__AFTER": json.dumps({"running": "2s"})}

    def stalls() -> list[dict[str, object]]:
        return [b for b in receiver.bodies() if b["type"] == "finetuned_model.stalled"]

    first = daemons(env)
    wait_for(stalls, timeout=10, what="the stall alert")
    (alert,) = stalls()
    assert alert["model_id"] == model
    assert alert["model_name"] == "slow"
    assert alert["status"] == "STATUS_FINETUNING"
    assert alert["state"] == "running"
    assert alert["provider"] == "cohere"
    assert alert["since"] == format_timestamp(entered)
    assert 2.0 <= float(str(alert["stalled_for_s"])) < 10
    assert str(alert["id"]).startswith("ftw_stall_")
    assert first.stop() == 0

    second = daemons(env | {"FTWATCH_LOG_LEVEL": "debug"})  # quiet cycles are logged at debug
    second.wait_log('"poll.cycle"', count=5)
    assert len(stalls()) == 1  # no second alert for the same stay
    moved_at = sim.set_status(model, "STATUS_DEPLOYING_API")
    wait_for(lambda: len(stalls()) == 2, timeout=10, what="the alert of the new stay")
    assert stalls()[1]["since"] == format_timestamp(moved_at)
    assert stalls()[1]["id"] != alert["id"]
    changed = [b for b in receiver.bodies() if b["type"] == "finetuned_model.status_changed"]
    assert [b["status"] for b in changed] == ["STATUS_DEPLOYING_API"]
    assert second.stop() == 0


def test_a_stall_alert_reads_plainly_on_stdout(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """The stdout notifier's text: "stuck in finetuning for … (since …)"."""
    sim.add_model("slow", "STATUS_FINETUNING", created_at_ns=time.time_ns() - 26 * 3_600 * 10**9)
    env = {
        **base_env,
        "FTWATCH_NOTIFIERS": json.dumps([{"type": "stdout"}]),
        "FTWATCH_STALL__AFTER": json.dumps({"FINETUNING": "24h"}),
    }
    done = run_once(env)
    assert "slow (" in done.stdout
    assert "stuck in finetuning for 26 h" in done.stdout


def test_a_purge_larger_than_one_batch_removes_every_old_row(
    open_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More rows than a purge batch holds (a batch of 10 here, 2,000 in use): removed in
    several transactions, all of them, and only the finished ones."""
    monkeypatch.setattr(OutboxSql, "PURGE_BATCH", 10)
    store = open_store()
    count = 25
    at = "2026-11-01T12:00:00.000000000Z"
    transitions = [Transition(f"ftw_{n}", "m", None, "STATUS_READY", None, at, None, at) for n in range(count)]
    store.commit_cycle(CycleCommit.of({}, transitions, [Route("a")], 1000.0))
    while store.count_deliveries()["a"] > 1:
        head = head_of(store, "a")
        assert head is not None
        store.save_delivery(after_success(head[0]))
    assert store.purge(2000.0) == count - 1
    assert store.count_deliveries(DeliveryState.DELIVERED) == {}
    assert store.count_deliveries() == {"a": 1}
