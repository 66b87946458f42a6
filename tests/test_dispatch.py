"""The dispatcher in-process: the real Dispatcher, store and notifiers, a real receiver."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from ftwatch.app import wiring
from ftwatch.diff import Cursor
from ftwatch.dispatch import DeliveryAttempt, Dispatcher
from ftwatch.model import Transition
from ftwatch.notifiers.registry import LoadedNotifier
from ftwatch.outbox import DeliveryState
from ftwatch.settings import Settings
from ftwatch.store.base import CycleCommit, ModelState, Store

from .conftest import wait_for
from .receiver import Answer, Receiver

pytestmark = pytest.mark.anyio


@pytest.fixture
def second_receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _settings(*receivers: Receiver, **delivery: Any) -> Settings:
    notifiers = [{"type": "webhook", "url": r.url, "name": f"hook-{i}"} for i, r in enumerate(receivers)]
    return Settings.model_validate(
        {"notifiers": notifiers, "delivery": {"retry_initial_s": 0.05, "retry_max_s": 0.1, **delivery}}
    )


def _queue(store: Store, loaded: list[LoadedNotifier], count: int, start: int = 0) -> list[str]:
    transitions = [
        Transition(f"t{n}", "ft-1", "m", "STATUS_READY", None, f"2026-01-01T00:00:{n:02d}.000000000Z", None, "x")
        for n in range(start, start + count)
    ]
    state = {"ft-1": ModelState(Cursor(1, frozenset(), "STATUS_READY", horizon_ns=0), "m")}
    store.commit_cycle(CycleCommit.of(state, transitions, wiring.routes_of(loaded), now=time.time()))
    return [t.id for t in transitions]


async def _running(dispatcher: Dispatcher, loaded: list[LoadedNotifier], until: Callable[[], Any]) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(dispatcher.run, loaded)
        with anyio.fail_after(15):
            while not until():  # noqa: ASYNC110 - the receiver is a thread: poll it
                await anyio.sleep(0.02)
        await dispatcher.stop(1.0)
        group.cancel_scope.cancel()


async def test_each_notifier_gets_its_queue_oldest_first(
    open_store: Callable[[], Store], receiver: Receiver, second_receiver: Receiver
) -> None:
    """Both notifiers receive every transition, in order; attempts are observed."""
    store = open_store()
    attempts: list[DeliveryAttempt] = []
    settings = _settings(receiver, second_receiver)
    async with wiring.hook_client() as http:
        loaded = wiring.load_notifiers(settings, wiring.notifier_context(http, io.StringIO()))
        ids = _queue(store, loaded, 5)
        dispatcher = wiring.build_dispatcher(store, settings, on_attempt=attempts.append)
        await _running(dispatcher, loaded, lambda: len(receiver.bodies()) == 5 and len(second_receiver.bodies()) == 5)
    assert [b["id"] for b in receiver.bodies()] == ids
    assert [b["id"] for b in second_receiver.bodies()] == ids
    assert {(a.notifier, a.outcome) for a in attempts} == {("hook-0", "ok"), ("hook-1", "ok")}
    assert store.count_deliveries(DeliveryState.PENDING) == {}


async def test_a_failing_receiver_delays_only_its_own_notifier(
    open_store: Callable[[], Store], receiver: Receiver, second_receiver: Receiver
) -> None:
    """One receiver answers 503 for a while: the other gets everything meanwhile; then both do."""
    store = open_store()
    receiver.answer(*[Answer(503)] * 4)
    settings = _settings(receiver, second_receiver)
    async with wiring.hook_client() as http:
        loaded = wiring.load_notifiers(settings, wiring.notifier_context(http, io.StringIO()))
        ids = _queue(store, loaded, 3)
        dispatcher = wiring.build_dispatcher(store, settings)
        await _running(dispatcher, loaded, lambda: len(receiver.bodies()) == 3)
    assert len(receiver.attempts) == 7  # four refusals of the head, then three
    assert [b["id"] for b in receiver.bodies()] == ids
    assert second_receiver.received[-1].at < receiver.received[0].at


async def test_run_once_delivers_past_a_dead_letter_and_stops_at_a_retry(
    open_store: Callable[[], Store], receiver: Receiver
) -> None:
    """deliver_due: a 400 is a dead letter and the next goes; a 503 stays at the head."""
    store = open_store()
    receiver.answer(Answer(400, b"bad"), Answer(200), Answer(503))
    settings = _settings(receiver)
    async with wiring.hook_client() as http:
        loaded = wiring.load_notifiers(settings, wiring.notifier_context(http, io.StringIO()))
        _queue(store, loaded, 4)
        failed = await wiring.build_dispatcher(store, settings).deliver_due(loaded)
    assert failed == 1
    assert store.count_deliveries(DeliveryState.DEAD) == {"hook-0": 1}
    assert store.count_deliveries(DeliveryState.DELIVERED) == {"hook-0": 1}
    assert store.count_deliveries(DeliveryState.PENDING) == {"hook-0": 2}


async def test_a_notifier_removed_by_reconfigure_keeps_its_queue_for_its_return(
    open_store: Callable[[], Store], receiver: Receiver
) -> None:
    """reconfigure without it stops its worker; with it again (same key) the queue drains."""
    store = open_store()
    settings = _settings(receiver)
    empty = Settings.model_validate({})
    async with wiring.hook_client() as http, anyio.create_task_group() as group:
        loaded = wiring.load_notifiers(settings, wiring.notifier_context(http, io.StringIO()))
        dispatcher = wiring.build_dispatcher(store, settings)
        group.start_soon(dispatcher.run, [])
        await anyio.sleep(0.05)
        ids = _queue(store, loaded, 2)
        dispatcher.reconfigure(wiring.retry_policy(empty), [])
        dispatcher.wake()
        await anyio.sleep(0.3)
        assert receiver.bodies() == []
        assert store.count_deliveries() == {"hook-0": 2}
        dispatcher.reconfigure(wiring.retry_policy(settings), loaded)
        dispatcher.wake()
        with anyio.fail_after(10):
            while len(receiver.bodies()) < 2:  # noqa: ASYNC110 - the receiver is a thread: poll it
                await anyio.sleep(0.02)
        await dispatcher.stop(1.0)
        group.cancel_scope.cancel()
    assert [b["id"] for b in receiver.bodies()] == ids


async def test_stop_lets_a_send_in_flight_finish_and_keeps_the_rest(
    open_store: Callable[[], Store], receiver: Receiver
) -> None:
    """A slow receiver: stop(grace) waits for the send under way, nothing more is sent."""
    store = open_store()
    receiver.default = Answer(200, delay_s=0.5)
    settings = _settings(receiver)
    async with wiring.hook_client() as http, anyio.create_task_group() as group:
        loaded = wiring.load_notifiers(settings, wiring.notifier_context(http, io.StringIO()))
        _queue(store, loaded, 3)
        dispatcher = wiring.build_dispatcher(store, settings)
        group.start_soon(dispatcher.run, loaded)
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: receiver.attempts, what="the first send"))
        await dispatcher.stop(2.0)
        group.cancel_scope.cancel()
    assert len(receiver.received) == 1
    assert store.count_deliveries(DeliveryState.DELIVERED) == {"hook-0": 1}
    assert store.count_deliveries(DeliveryState.PENDING) == {"hook-0": 2}
