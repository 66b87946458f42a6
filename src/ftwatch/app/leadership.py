"""Polling leadership between replicas that share a store: who polls this cycle.

Correctness never rests on it (a transition is queued once whoever polls); it saves
the API budget, so that any number of replicas cost one watcher's requests. The lease
lives in the store, judged by the store's clock, and each cycle's commit renews it in
its own transaction: a leader paused past its lease (SIGSTOP, a long GC) finds it gone
at commit, writes nothing, and steps down.
"""

from __future__ import annotations

import os
import socket
import uuid

import anyio
import structlog

from ftwatch.store.base import Lease, Store, StoreError

__all__ = ["Leadership"]

log = structlog.get_logger("ftwatch.leadership")

#: Consecutive cycles the API cannot be polled before the leader lets another try.
STEP_DOWN_AFTER_FAILURES = 3


class Leadership:
    """This process's view of the polling lease (of a shared store)."""

    def __init__(self, store: Store, lease_s: float) -> None:
        self.store = store
        self.lease_s = lease_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.term: int | None = None
        self._failures = 0
        self._quiet_until = -1.0
        self._said: int | str | None = "nothing yet"  # what the log last said of the role

    @property
    def leading(self) -> bool:
        return self.term is not None

    def lease(self) -> Lease | None:
        return None if self.term is None else Lease(self.holder, self.term, self.lease_s)

    async def ensure(self) -> bool:
        """Whether this process polls this cycle: it leads, or takes an expired lease."""
        if anyio.current_time() < self._quiet_until:
            return False
        try:
            term = await anyio.to_thread.run_sync(self.store.acquire_lease, self.holder, self.lease_s)
        except StoreError as exc:
            if self._said != "unknown":  # once per outage
                log.warning("leader.unknown", error=str(exc), note="not polling until the store answers")
                self._said = "unknown"
            self.term = None
            return False
        if term != self._said:
            if term is None:
                log.info("leader.standby", note="another replica polls")
            else:
                log.info("leader.acquired", term=term, holder=self.holder)
            self._said = term
        self.term = term
        return term is not None

    def lost(self) -> None:
        """The commit found the lease gone: another leads now."""
        log.warning("leader.lost", term=self.term, note="nothing of this cycle was written; standing by")
        self.term = None

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
        if term is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                try:
                    await anyio.to_thread.run_sync(self.store.release_lease, self.holder, term)
                except StoreError as exc:
                    log.warning("leader.release_failed", error=str(exc), note="it expires by itself")
