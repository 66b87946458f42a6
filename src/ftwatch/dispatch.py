"""Outbox -> notifiers: one worker per notifier, each with its own pace and retries.

A notifier's transitions go out strictly oldest first: when the head fails, the
worker waits for its retry rather than skipping ahead. Workers never wait on each
other, so a dead receiver delays nobody else. Knows no source and no poller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import anyio
import structlog

from ftwatch.clock import SYSTEM_CLOCK, Clock
from ftwatch.notifiers.base import DeliveryFailedError
from ftwatch.notifiers.registry import LoadedNotifier
from ftwatch.outbox import Delivery, DeliveryState, Failure, RetryPolicy, after_failure, after_success
from ftwatch.store.base import BUSY, Claim, Store, StoreError

__all__ = ["DeliveryAttempt", "Dispatcher"]

log = structlog.get_logger("ftwatch.dispatch")


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try of one notifier."""

    notifier: str
    #: ``ok``, ``retry`` or ``dead``.
    outcome: str
    seconds: float


#: An idle worker looks at the outbox this often even unwoken: with several replicas,
#: another one may have queued for it, or have died holding its head.
_IDLE_LOOK_S = 0.5


def _ignore(_: object) -> None:
    pass


class _Worker:
    def __init__(self, loaded: LoadedNotifier) -> None:
        self.loaded = loaded
        self.wakeup = anyio.Event()
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.last_sent = -math.inf


class Dispatcher:
    """Delivers pending transitions until stopped."""

    def __init__(
        self,
        store: Store,
        policy: RetryPolicy,
        *,
        observer: Callable[[DeliveryAttempt], None] = _ignore,
        on_store_error: Callable[[str], None] = _ignore,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.policy = policy
        self._observer = observer
        self._on_store_error = on_store_error
        self._clock = clock.now
        self._workers: dict[str, _Worker] = {}
        self._group: anyio.abc.TaskGroup | None = None
        self._stopping = False
        self._stopped = anyio.Event()

    @property
    def notifiers(self) -> list[LoadedNotifier]:
        return [worker.loaded for worker in self._workers.values()]

    def wake(self) -> None:
        """New transitions are in the outbox."""
        for worker in self._workers.values():
            worker.wakeup.set()

    def reconfigure(self, policy: RetryPolicy, notifiers: Sequence[LoadedNotifier]) -> None:
        """A reload: the retry policy and the notifiers, now."""
        self.policy = policy
        self.set_notifiers(notifiers)

    def set_notifiers(self, notifiers: Sequence[LoadedNotifier]) -> None:
        """Start workers for new notifiers, stop those of removed ones (a reload).

        A removed notifier's undelivered transitions stay in the outbox, and are sent
        if a notifier with the same key comes back.
        """
        wanted = {loaded.key: loaded for loaded in notifiers}
        for key in list(self._workers):
            # An unchanged notifier keeps its worker, and whatever it has in flight.
            if key not in wanted or wanted[key].config != self._workers[key].loaded.config:
                self._workers.pop(key).scope.cancel()
        if self._group is None:  # not running yet: run() starts them
            self._workers = {key: _Worker(loaded) for key, loaded in wanted.items()}
            return
        for key, loaded in wanted.items():
            if key not in self._workers:
                worker = _Worker(loaded)
                self._workers[key] = worker
                if self._group is not None:
                    self._group.start_soon(self._run_worker, worker)

    async def run(self, notifiers: Sequence[LoadedNotifier]) -> None:
        """Deliver until :meth:`stop`; give it the initial notifiers (none is fine: a
        reload may add some later, and their workers start in this group)."""
        async with anyio.create_task_group() as group:
            self._group = group
            self.set_notifiers(notifiers)
            await self._stopped.wait()
        self._group = None

    async def stop(self, grace_s: float) -> None:
        """Start nothing new; let sends in flight finish for up to ``grace_s``."""
        self._stopping = True
        self._stopped.set()
        workers = list(self._workers.values())
        for worker in workers:
            worker.wakeup.set()
        with anyio.move_on_after(grace_s):
            for worker in workers:
                await worker.done.wait()
        for worker in workers:
            worker.scope.cancel()

    async def deliver_due(self, notifiers: Sequence[LoadedNotifier]) -> int:
        """Deliver what is due now, then return (``run --once``): a notifier stops at
        its first failure, which stays in the outbox for the next run. Returns how many
        failed."""
        failed = 0

        async def drain(worker: _Worker) -> None:
            nonlocal failed
            while True:
                claim = await self._claim(worker.loaded.key)
                if claim is False:
                    failed += 1
                    return
                if claim is None or claim == BUSY:
                    return  # nothing due here, or another process is sending it
                assert not isinstance(claim, str)
                if claim.head[0].next_attempt_at > self._clock():
                    await self._release(claim)
                    return
                pace = worker.loaded.notifier.min_interval_s - (anyio.current_time() - worker.last_sent)
                if pace > 0:
                    await anyio.sleep(pace)
                outcome = await self._attempt(worker, claim)
                if outcome is DeliveryState.PENDING:
                    # Stays at the head, to be retried by the next run. A dead letter
                    # no longer blocks the queue: go on with the next transition.
                    failed += 1
                    return

        async with anyio.create_task_group() as group:
            for loaded in notifiers:
                group.start_soon(drain, _Worker(loaded))
        return failed

    async def _run_worker(self, worker: _Worker) -> None:
        try:
            with worker.scope:
                await self._work(worker)
        finally:
            worker.done.set()

    async def _work(self, worker: _Worker) -> None:
        key = worker.loaded.key
        while not self._stopping:
            # A fresh event before looking, so a wake() during the look is not lost.
            worker.wakeup = anyio.Event()
            claim = await self._claim(key)
            if claim is False or claim == BUSY:
                # The store failed (locked, say), or another process is sending for
                # this notifier: look again soon.
                with anyio.move_on_after(1.0):
                    await worker.wakeup.wait()
                continue
            if claim is None:
                # Another process may queue for us too (several replicas): look again
                # now and then, besides being woken.
                with anyio.move_on_after(_IDLE_LOOK_S):
                    await worker.wakeup.wait()
                continue
            assert not isinstance(claim, str)
            wait = claim.head[0].next_attempt_at - self._clock()
            if wait > 0:
                await self._release(claim)
                with anyio.move_on_after(min(wait, _IDLE_LOOK_S)):
                    await worker.wakeup.wait()
                continue
            pace = worker.loaded.notifier.min_interval_s - (anyio.current_time() - worker.last_sent)
            if pace > 0:
                await anyio.sleep(pace)
            if self._stopping:
                await self._release(claim)
                return
            await self._attempt(worker, claim)

    async def _claim(self, key: str) -> Claim | Literal["busy", False] | None:
        """The notifier's oldest pending delivery, claimed; ``False`` if the store failed."""
        try:
            return await anyio.to_thread.run_sync(self.store.claim_next, key)
        except StoreError as exc:
            log.warning("store.failed", operation="claim_next", notifier=key, error=str(exc))
            self._on_store_error("claim_next")
            return False

    async def _release(self, claim: Claim) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(claim.release)

    async def _finish(self, claim: Claim, updated: Delivery) -> None:
        """Record the outcome through the claim (one transaction with its release); if
        that fails, the claim is gone, and the outcome is saved on its own."""
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(claim.finish, updated)
        except StoreError as exc:
            log.error("store.failed", operation="finish_claim", notifier=updated.notifier, error=str(exc))
            self._on_store_error("finish_claim")
            await self._save(updated)

    async def _save(self, updated: Delivery) -> None:
        """Record an attempt's outcome, trying again until the store takes it.

        A delivery that was sent must be recorded before anything else goes out, or a
        restart would send it again: the worker holds it here (in memory) while the
        state file refuses writes, and only a shutdown gives up on it (then, and
        only then, the receiver may get it twice, with the same id).
        """
        delay = 0.2
        while True:
            try:
                # Shielded: cancelled in the middle, the outcome would be lost.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.store.save_delivery, updated)
            except StoreError as exc:
                log.error(
                    "store.failed",
                    operation="save_delivery",
                    notifier=updated.notifier,
                    transition_id=updated.transition_id,
                    error=str(exc),
                    retry_in_s=delay,
                )
                self._on_store_error("save_delivery")
            else:
                return
            try:
                await anyio.sleep(delay)
            except anyio.get_cancelled_exc_class():
                log.warning(
                    "notify.unsaved",
                    notifier=updated.notifier,
                    transition_id=updated.transition_id,
                    note="stopping before the outcome was saved: it may be sent again, with the same id",
                )
                raise
            delay = min(delay * 2, 10.0)

    async def _attempt(self, worker: _Worker, claim: Claim) -> DeliveryState:
        """One try of a claimed delivery; its state after it."""
        loaded = worker.loaded
        delivery, transition = claim.head
        started = anyio.current_time()
        failure: Failure | None
        try:
            await loaded.notifier.send(transition)
        except anyio.get_cancelled_exc_class():
            await self._release(claim)  # not sent, or not known to be: give it back
            raise
        except DeliveryFailedError as exc:
            failure = Failure(exc.detail, permanent=exc.permanent, retry_after_s=exc.retry_after_s)
        except Exception as exc:  # noqa: BLE001 - a plug-in's bug must not stop the others
            failure = Failure(f"{type(exc).__name__}: {exc}"[:200])
        else:
            failure = None
        worker.last_sent = anyio.current_time()
        seconds = worker.last_sent - started
        if failure is None:
            updated = after_success(delivery)
            outcome = "ok"
            log.info("notify.delivered", notifier=loaded.key, transition_id=transition.id, model_id=transition.model_id)
        else:
            updated = after_failure(delivery, failure, self._clock(), self.policy)
            outcome = "dead" if updated.state is DeliveryState.DEAD else "retry"
            if updated.state is DeliveryState.DEAD:
                log.error(
                    "notify.dead_letter",
                    notifier=loaded.key,
                    transition_id=transition.id,
                    model_id=transition.model_id,
                    attempts=updated.attempts,
                    error=failure.detail,
                )
            else:
                log.warning(
                    "notify.failed",
                    notifier=loaded.key,
                    transition_id=transition.id,
                    attempts=updated.attempts,
                    retry_in_s=round(updated.next_attempt_at - self._clock(), 3),
                    error=failure.detail,
                )
        self._observer(DeliveryAttempt(loaded.key, outcome, seconds))
        # Recorded even when cancelled now: a delivered transition must not be re-sent.
        await self._finish(claim, updated)
        return updated.state
