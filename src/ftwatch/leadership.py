"""Polling leadership between replicas that share a store: who polls this cycle.

Correctness never rests on it (a transition is queued once whoever polls); it saves
the API budget, so that any number of replicas cost one watcher's requests. The lease
lives in the store, judged by the store's clock, and each cycle's commit renews it in
its own transaction: a leader paused past its lease (SIGSTOP, a long GC) finds it gone
at commit, writes nothing, and steps down. Between cycles the leader renews it every
third of ``lease_s`` (:meth:`Leadership.keep`), so an interval longer than the lease
does not hand leadership around; before a cycle it asks the store only when it has
not renewed for that long: the commit checks the lease anyway.
"""

from __future__ import annotations

import os
import socket
import uuid

import anyio
import structlog

from ftwatch.store.base import Lease, LeaseStore, StoreError

__all__ = ["Leadership"]

log = structlog.get_logger("ftwatch.leadership")

#: Consecutive cycles the API cannot be polled before the leader lets another try.
STEP_DOWN_AFTER_FAILURES = 3


class Leadership:
    """This process's view of the polling lease (of a shared store)."""

    def __init__(self, store: LeaseStore, lease_s: float) -> None:
        self.store = store
        self.lease_s = lease_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.term: int | None = None
        self._failures = 0
        self._quiet_until = -1.0
        self._said: int | str | None = "nothing yet"  # what the log last said of the role
        self._renewed_at = -float("inf")
        self._handovers = 0  # a renewal under way when the lease is given up must not take it back
        self._asking = anyio.Lock()  # ... and the release is sent after it, not before

    @property
    def leading(self) -> bool:
        return self.term is not None

    def lease(self) -> Lease | None:
        return None if self.term is None else Lease(self.holder, self.term, self.lease_s)

    @property
    def _renew_every_s(self) -> float:
        return self.lease_s / 3

    async def ensure(self) -> bool:
        """Whether this process polls this cycle: it leads, or takes an expired lease."""
        now = anyio.current_time()
        if now < self._quiet_until:
            return False
        if self.term is not None and now - self._renewed_at < self._renew_every_s:
            return True  # renewed a moment ago; the commit checks it in its transaction
        return await self._acquire()

    def committed(self) -> None:
        """A cycle's commit renewed the lease."""
        if self.term is not None:
            self._renewed_at = anyio.current_time()

    async def keep(self) -> None:
        """Renew the lease while leading, every third of it (a task of its own)."""
        while True:
            await anyio.sleep(self._renew_every_s)
            if self.term is not None:
                await self._acquire()

    async def _acquire(self) -> bool:
        asked_at, handovers = anyio.current_time(), self._handovers
        try:
            async with self._asking:
                term = await anyio.to_thread.run_sync(self.store.acquire_lease, self.holder, self.lease_s)
        except StoreError as exc:
            if handovers != self._handovers:
                return False
            if self._said != "unknown":  # once per outage
                log.warning("leader.unknown", error=str(exc), note="not polling until the store answers")
                self._said = "unknown"
            self.term = None
            return False
        if handovers != self._handovers:
            return False  # released (a stop, a step-down) while asking: stay released
        if term != self._said:
            if term is None:
                log.info("leader.standby", note="another replica polls")
            else:
                log.info("leader.acquired", term=term, holder=self.holder)
            self._said = term
        self.term = term
        if term is not None:
            self._renewed_at = asked_at
        return term is not None

    def lost(self) -> None:
        """The commit found the lease gone: another leads now."""
        log.warning("leader.lost", term=self.term, note="nothing of this cycle was written; standing by")
        self.term = None
        self._handovers += 1

    async def polled(self, ok: bool) -> None:
        """After each cycle this process led: a leader that cannot reach the API for
        several cycles lets another replica (maybe better placed) try."""
        self._failures = 0 if ok else self._failures + 1
        if self._failures >= STEP_DOWN_AFTER_FAILURES and self.term is not None:
            log.warning("leader.step_down", term=self.term, failures=self._failures, note="the API cannot be polled")
            await self.release()
            self._failures = 0
            self._quiet_until = anyio.current_time() + self.lease_s

    async def release(self) -> None:
        """Hand over at once (a stop)."""
        term, self.term = self.term, None
        self._handovers += 1
        if term is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                try:
                    async with self._asking:
                        await anyio.to_thread.run_sync(self.store.release_lease, self.holder, term)
                except StoreError as exc:
                    log.warning("leader.release_failed", error=str(exc), note="it expires by itself")
