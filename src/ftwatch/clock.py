"""Time, injected: the engine asks a :class:`Clock`, so a test moves time on instead
of sleeping (as trio's ``MockClock`` lets it).

Only the wall clock is here (detection times, stall ages, retention): the pacing of
the loop is anyio's business and stays on its own monotonic clock.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """The wall clock, as nanoseconds and as seconds since the epoch."""

    def now_ns(self) -> int: ...

    def now(self) -> float: ...


class SystemClock:
    """The machine's clock."""

    def now_ns(self) -> int:
        return time.time_ns()

    def now(self) -> float:
        return time.time()


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told (tests): ``advance(3600)`` is an hour later."""

    def __init__(self, start_ns: int = 1_700_000_000 * 10**9) -> None:
        self._ns = start_ns

    def now_ns(self) -> int:
        return self._ns

    def now(self) -> float:
        return self._ns / 1e9

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._ns += int(seconds * 1e9)
