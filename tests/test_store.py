"""The Store protocol, run against every backend in ``STORE_BACKENDS``."""

from __future__ import annotations

from collections.abc import Callable

from ftwatch.diff import Cursor
from ftwatch.outbox import Delivery, DeliveryState, Route, after_success
from ftwatch.store.base import Claim, CycleCommit, ModelState, Store, model_key, models_in

from .conftest import wait_for
from .rows import head_of
from .rows import transition as _transition


def _state(at_ns: int = 5) -> dict[str, ModelState]:
    return {"ft-1": ModelState(Cursor(at_ns, frozenset({(at_ns, "S", "", 0)}), "S", horizon_ns=0), "m", "S", "u")}


def test_a_new_store_is_fresh_until_a_cycle_is_committed(open_store: Callable[[], Store]) -> None:
    """is_fresh holds until the first commit, across a reopen too."""
    store = open_store()
    assert store.is_fresh()
    assert store.load_models() == {}
    store.commit_cycle(CycleCommit.of({}, [], [], now=0.0))
    assert not store.is_fresh()
    store.close()
    assert not open_store().is_fresh()


def test_cursors_round_trip_whole(open_store: Callable[[], Store]) -> None:
    """Every part of a cursor (window, horizon, undated, lazy) and the list's view come back."""
    store = open_store()
    cursor = Cursor(
        9,
        frozenset({(9, "STATUS_READY", "u", 0), (7, "STATUS_QUEUED", "", 1)}),
        "STATUS_READY",
        lazy=False,
        horizon_ns=4,
        undated=frozenset({("STATUS_FAILED", "", 0)}),
    )
    state = {"ft-1": ModelState(cursor, "name", "STATUS_READY", "2026-01-01T00:00:00Z")}
    store.commit_cycle(CycleCommit.of(state, [], [], now=0.0, scope="all"))
    store.close()
    again = open_store()
    assert again.load_models() == state
    assert again.load_scope() == "all"


def test_each_transition_is_queued_once_for_each_notifier_that_wants_it(open_store: Callable[[], Store]) -> None:
    """Routes filter; committing the same transition twice queues it once."""
    store = open_store()
    routes = [Route("all"), Route("ready-only", statuses=frozenset({"STATUS_READY"}))]
    queued = store.commit_cycle(
        CycleCommit.of(_state(), [_transition(1), _transition(2, status="STATUS_FAILED")], routes, now=0.0)
    )
    assert queued == 3
    assert store.commit_cycle(CycleCommit.of(_state(), [_transition(1)], routes, now=0.0)) == 0  # already queued
    assert store.count_deliveries() == {"all": 2, "ready-only": 1}


def test_pending_deliveries_come_oldest_first_per_notifier(open_store: Callable[[], Store]) -> None:
    """A claim's head is the oldest undelivered; saving it delivered moves to the next."""
    store = open_store()
    store.commit_cycle(CycleCommit.of(_state(), [_transition(1), _transition(2)], [Route("hook")], now=10.0))
    store.commit_cycle(CycleCommit.of(_state(), [_transition(3)], [Route("hook")], now=11.0))
    seen = []
    while (head := head_of(store, "hook")) is not None:
        delivery, transition = head
        assert delivery == Delivery(transition.id, "hook", created_at=delivery.created_at)
        seen.append(transition.id)
        store.save_delivery(after_success(delivery))
    assert seen == ["t1", "t2", "t3"]
    assert store.count_deliveries(DeliveryState.DELIVERED) == {"hook": 3}
    assert head_of(store, "other") is None


def test_a_dead_letter_leaves_the_queue_and_is_counted(open_store: Callable[[], Store]) -> None:
    """A delivery saved dead is no longer pending; the next one is."""
    store = open_store()
    store.commit_cycle(CycleCommit.of(_state(), [_transition(1), _transition(2)], [Route("hook")], now=0.0))
    head = head_of(store, "hook")
    assert head is not None
    delivery, _ = head
    from dataclasses import replace  # noqa: PLC0415

    store.save_delivery(replace(delivery, state=DeliveryState.DEAD, attempts=1, last_error="HTTP 400"))
    head = head_of(store, "hook")
    assert head is not None
    assert head[1].id == "t2"
    assert store.count_deliveries(DeliveryState.DEAD) == {"hook": 1}


def test_the_transition_comes_back_with_its_content(open_store: Callable[[], Store]) -> None:
    """What is queued is what is sent after a restart: same id, same body."""
    store = open_store()
    original = _transition(4)
    store.commit_cycle(CycleCommit.of(_state(), [original], [Route("hook")], now=0.0))
    store.close()
    head = head_of(open_store(), "hook")
    assert head is not None
    assert head[1] == original


def test_the_schema_version_is_set_and_kept(open_store: Callable[[], Store]) -> None:
    """A new store has a schema version, and a reopen finds the same (no migration)."""
    store = open_store()
    version = store.schema_version()
    assert version >= 1
    store.close()
    assert open_store().schema_version() == version


def test_a_cursor_never_moves_back(open_store: Callable[[], Store]) -> None:
    """A slower poller committing an older cursor cannot take a model's cursor back."""
    store = open_store()
    store.commit_cycle(CycleCommit.of(_state(at_ns=10), [], [], now=0.0))
    store.commit_cycle(CycleCommit.of(_state(at_ns=5), [], [], now=0.0))
    assert store.load_models()["ft-1"].cursor.at_ns == 10
    store.commit_cycle(CycleCommit.of(_state(at_ns=12), [], [], now=0.0))
    assert store.load_models()["ft-1"].cursor.at_ns == 12


def test_two_stores_racing_on_one_database_queue_each_transition_once(postgres_url: str) -> None:
    """Two processes' stores on one PostgreSQL database, committing the same cycle
    at once from threads: one row per transition and notifier."""
    import threading  # noqa: PLC0415

    from ftwatch.store.postgres import PostgresStore  # noqa: PLC0415

    stores = [PostgresStore(postgres_url, where="test") for _ in range(2)]
    transitions = [_transition(n) for n in range(20)]
    barrier = threading.Barrier(2)
    queued: list[int] = []

    def commit(store: Store) -> None:
        barrier.wait()
        queued.append(store.commit_cycle(CycleCommit.of(_state(), transitions, [Route("hook")], now=0.0)))

    threads = [threading.Thread(target=commit, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(queued) == 20
    assert stores[0].count_deliveries() == {"hook": 20}
    for store in stores:
        store.close()


def _claimed(store: Store, notifier: str) -> Claim:
    claim = store.claim_next(notifier)
    assert claim is not None, "nothing pending"
    assert not isinstance(claim, str), "another process holds it"
    return claim


def test_a_claim_finished_moves_on_and_one_released_comes_back(open_store: Callable[[], Store]) -> None:
    """claim_next holds the head; release gives it back unchanged; finish records it."""
    store = open_store()
    store.commit_cycle(CycleCommit.of(_state(), [_transition(1), _transition(2)], [Route("hook")], now=0.0))
    claim = _claimed(store, "hook")
    assert claim.head[1].id == "t1"
    claim.release()
    again = _claimed(store, "hook")
    assert again.head[1].id == "t1"
    again.finish(after_success(again.head[0]))
    last = _claimed(store, "hook")
    assert last.head[1].id == "t2"
    last.release()
    assert store.claim_next("nobody") is None


def test_one_sender_per_notifier_across_processes_and_a_dead_holder_gives_back(postgres_url: str) -> None:
    """While one store holds a notifier's claim, another sees BUSY (and may claim for
    other notifiers); when the holder's connection dies, the row is free again."""
    from ftwatch.store.base import BUSY  # noqa: PLC0415
    from ftwatch.store.postgres import PostgresStore  # noqa: PLC0415

    first, second = PostgresStore(postgres_url, where="test"), PostgresStore(postgres_url, where="test")
    first.commit_cycle(CycleCommit.of(_state(), [_transition(1)], [Route("hook"), Route("other")], now=0.0))
    held = _claimed(first, "hook")
    assert second.claim_next("hook") == BUSY
    _claimed(second, "other").release()
    held._conn.close()  # type: ignore[attr-defined]  # as a SIGKILL would: the connection goes, the server rolls back
    # The server ends the dead session (and frees its lock) a moment after the close.

    def free() -> bool:
        claim = second.claim_next("hook")
        if claim is None or isinstance(claim, str):
            return False
        claim.release()
        return True

    wait_for(free, timeout=10, what="the dead holder's claim freed")
    taken = _claimed(second, "hook")
    assert taken.head[1].id == "t1"
    taken.release()
    second.close()
    first.close()


def test_each_source_has_its_own_baseline_scope_and_models(open_store: Callable[[], Store]) -> None:
    """A source's namespace: its own baseline mark and scope, its models under its name,
    while the first Cohere source's bare rows and marks are as they always were."""
    store = open_store()
    store.commit_cycle(CycleCommit.of(_state(), [], [], now=1.0, scope="all"))  # the first Cohere source
    assert store.is_fresh("openai")  # a source added later takes its own baseline
    openai = {model_key("openai", "ftjob-1"): next(iter(_state().values()))}
    store.commit_cycle(CycleCommit(openai, [], [], now=2.0, scope='["ftjob-1"]', namespace="openai"))
    store.close()
    again = open_store()
    assert not again.is_fresh()
    assert not again.is_fresh("openai")
    assert again.is_fresh("bedrock")
    assert (again.load_scope(), again.load_scope("openai"), again.load_scope("bedrock")) == ("all", '["ftjob-1"]', None)
    rows = again.load_models()
    assert set(models_in("", rows)) == {"ft-1"}
    assert set(models_in("openai", rows)) == {"ftjob-1"}
    assert models_in("bedrock", rows) == {}
    assert again.facts().models == {"": 1, "openai": 1}
