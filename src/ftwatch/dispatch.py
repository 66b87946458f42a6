"""Outbox -> notifiers: one worker per notifier, each with its own pace and retries.

A notifier's transitions go out strictly oldest first: when the head fails, the
worker waits for its retry rather than skipping ahead. Workers never wait on each
other, so a dead receiver delays nobody else. Knows no source and no poller.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import assert_never

import anyio
import structlog

from ftwatch.clock import SYSTEM_CLOCK, Clock
from ftwatch.notifiers.base import DeliveryFailedError
from ftwatch.notifiers.registry import LoadedNotifier
from ftwatch.outbox import Delivery, DeliveryState, Failure, RetryPolicy, after_failure, after_success
from ftwatch.store.base import Busy, Claim, Outbox, StoreError

__all__ = ["DeliveryAttempt", "DeliveryOutcome", "Dispatcher", "Idle", "NotDue", "Step"]

log = structlog.get_logger("ftwatch.dispatch")


class DeliveryOutcome(enum.StrEnum):
    """How one try ended (the ``outcome`` label of ``ftwatch_notifications``)."""

    DELIVERED = "ok"
    RETRY = "retry"  # failed; tried again after its backoff
    DEAD = "dead"  # failed for good, or for too long: a dead letter


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try of one notifier."""

    notifier: str
    outcome: DeliveryOutcome
    seconds: float


class Idle(enum.Enum):
    """A step that sent nothing, and why."""

    NOTHING_PENDING = "nothing pending"
    BUSY = "another process sends for this notifier"
    STORE_FAILED = "the state could not be read"
    STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class NotDue:
    """The head waits for its retry: this long."""

    wait_s: float


#: What one step of a notifier did: tried its head (and how that went), or not.
Step = DeliveryOutcome | Idle | NotDue


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
        store: Outbox,
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
                step = await self._step(worker)
                if step in (Idle.STORE_FAILED, DeliveryOutcome.RETRY):
                    # Stays at the head, to be retried by the next run.
                    failed += 1
                    return
                if not isinstance(step, DeliveryOutcome):
                    return  # nothing due here, or another process is sending it
                # Delivered, or a dead letter that no longer blocks the queue: go on.

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
        while not self._stopping:
            # A fresh event before looking, so a wake() during the look is not lost.
            worker.wakeup = anyio.Event()
            match await self._step(worker):
                case Idle.BUSY | Idle.STORE_FAILED:
                    # Another process is sending for this notifier, or the store
                    # failed (locked, say): look again soon.
                    wait_s = 1.0
                case Idle.NOTHING_PENDING:
                    # Another process may queue for us too (several replicas): look
                    # again now and then, besides being woken.
                    wait_s = _IDLE_LOOK_S
                case NotDue(wait_s=due_in):
                    wait_s = min(due_in, _IDLE_LOOK_S)
                case Idle.STOPPING:
                    return
                case DeliveryOutcome():
                    continue
                case unexpected:
                    assert_never(unexpected)
            with anyio.move_on_after(wait_s):
                await worker.wakeup.wait()

    async def _step(self, worker: _Worker) -> Step:
        """One step of a notifier, the same for the workers and ``run --once``: claim
        its head, give it back if it is not due, keep the notifier's pace, try it."""
        key = worker.loaded.key
        try:
            claim = await anyio.to_thread.run_sync(self.store.claim_next, key)
        except StoreError as exc:
            log.warning("store.failed", operation="claim_next", notifier=key, error=str(exc))
            self._on_store_error("claim_next")
            return Idle.STORE_FAILED
        if claim is None:
            return Idle.NOTHING_PENDING
        if isinstance(claim, Busy):
            return Idle.BUSY
        wait = claim.head[0].next_attempt_at - self._clock()
        if wait > 0:
            await self._release(claim)
            return NotDue(wait)
        pace = worker.loaded.notifier.min_interval_s - (anyio.current_time() - worker.last_sent)
        if pace > 0:
            await anyio.sleep(pace)
        if self._stopping:
            await self._release(claim)
            return Idle.STOPPING
        return await self._attempt(worker, claim)

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

    async def _attempt(self, worker: _Worker, claim: Claim) -> DeliveryOutcome:
        """One try of a claimed delivery, and how it went."""
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
        told = log.bind(notifier=loaded.key, transition_id=transition.id, model_id=transition.model_id)
        if failure is None:
            updated = after_success(delivery)
            outcome = DeliveryOutcome.DELIVERED
            told.info("notify.delivered")
        else:
            updated = after_failure(delivery, failure, self._clock(), self.policy)
            outcome = DeliveryOutcome.DEAD if updated.state is DeliveryState.DEAD else DeliveryOutcome.RETRY
            if updated.state is DeliveryState.DEAD:
                told.error("notify.dead_letter", attempts=updated.attempts, error=failure.detail)
            else:
                retry_in_s = round(updated.next_attempt_at - self._clock(), 3)
                told.warning("notify.failed", attempts=updated.attempts, retry_in_s=retry_in_s, error=failure.detail)
        self._observer(DeliveryAttempt(loaded.key, outcome, seconds))
        # Recorded even when cancelled now: a delivered transition must not be re-sent.
        await self._finish(claim, updated)
        return outcome
