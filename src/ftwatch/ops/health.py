"""``/healthz``, ``/readyz`` and ``/metrics`` for ``ftwatch run``.

Liveness says only whether the loop makes progress, never whether the API is up:
restarting ftwatch cannot fix a provider's API. Readiness says whether polling works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

import anyio

from ftwatch.cycle import CycleReport, Failed, Polled, Standby
from ftwatch.sources.base import ApiWait, RequestDone

__all__ = ["Health"]


class Health:
    """The loop's heartbeat and the outcome of its cycles (monotonic seconds)."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = anyio.current_time) -> None:
        self._clock = clock
        self.interval_s = interval_s
        self.last_beat = clock()
        self.last_success: float | None = None
        self.last_error: str | None = None
        #: The loop waits on purpose until then (the API said Retry-After).
        self.wait_until = -1.0
        self.wait_reason = ""
        #: ``single`` (one process, the default), ``leader`` or ``standby``.
        self.role = "single"
        #: Replicas on one store: whether this one watches what the leader does.
        self.config = "n/a: one process"

    @property
    def stuck_after_s(self) -> float:
        # A cycle retries for a while before it gives up; only a silence well
        # past that means the loop is stuck.
        return max(120.0, 3 * self.interval_s)

    def beat(self) -> None:
        self.last_beat = self._clock()

    # --- what it subscribes to ------------------------------------------------------

    def cycle_done(self, report: CycleReport) -> None:
        match report:
            case Standby():
                # A hot standby is healthy and ready: it takes over within a lease.
                self.role = "standby"
                self.succeeded()
            case Polled():
                self.succeeded()
            case Failed(error=error):
                self.failed(error)
            case unexpected:
                assert_never(unexpected)

    def request_done(self, request: RequestDone) -> None:
        self.beat()

    def api_wait(self, wait: ApiWait) -> None:
        key = f"{wait.source}'s max_retry_after_s" if wait.source else "max_retry_after_s"
        capped = f" (capped from {wait.asked_s:g}s by {key})" if wait.asked_s > wait.seconds else ""
        self.waiting(wait.seconds, f"the API asked to retry after {wait.asked_s:g}s{capped}")

    def reconfigure(self, interval_s: float) -> None:
        self.interval_s = interval_s

    def succeeded(self) -> None:
        self.beat()
        self.last_success = self._clock()
        self.last_error = None

    def failed(self, error: str) -> None:
        self.beat()
        self.last_error = error

    def waiting(self, seconds: float, reason: str) -> None:
        """A deliberate pause: the loop is alive while it lasts, however long."""
        self.beat()
        self.wait_until = max(self.wait_until, self._clock() + seconds)
        self.wait_reason = reason

    def waiting_s(self) -> float:
        return max(0.0, self.wait_until - self._clock())

    def alive(self) -> bool:
        return self._clock() - max(self.last_beat, self.wait_until) < self.stuck_after_s

    def describe_wait(self) -> str:
        left = self.waiting_s()
        return f"waiting {left:.0f}s: {self.wait_reason}" if left > 0 else ""

    def ready(self) -> tuple[bool, str]:
        wait = self.describe_wait()
        suffix = f"; {wait}" if wait else ""
        if self.last_error is not None:
            return False, f"last poll failed: {self.last_error}{suffix}"
        if self.last_success is None:
            return False, f"no successful poll yet{suffix}"
        age = self._clock() - self.last_success
        if age > 2 * self.interval_s + 60 + self.waiting_s():
            return False, f"last successful poll {age:.0f}s ago{suffix}"
        return True, f"ok{suffix}"
