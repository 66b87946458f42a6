"""One request budget for the whole process, shared with nobody else's code.

:class:`TokenBucket` is the pure arithmetic; :class:`RateLimiter` waits on it.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    """A bucket sized so that no 60-second window ever holds more than ``per_minute``
    requests: a burst of ``capacity`` plus a refill of the rest over the minute.

    ``reserve`` hands out future slots in order, so waiting callers are served first
    come, first served.
    """

    def __init__(self, per_minute: int, now: float) -> None:
        self.capacity = max(1, per_minute // 10)
        # Burst plus a minute of refill must not exceed the budget.
        self.rate_per_s = max(per_minute - self.capacity, 1) / 60.0
        self._tokens = float(self.capacity)
        self._updated = now

    def reserve(self, now: float) -> float:
        """Take one token; return how long the caller must wait before using it."""
        elapsed = max(now - self._updated, 0.0)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_s)
        self._updated = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate_per_s


class RateLimiter:
    """Waits until the budget allows one more request."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = anyio.current_time) -> None:
        self._clock = clock
        self._bucket: TokenBucket | None = None
        self.per_minute = per_minute
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` (the API said so: a 429's
        ``Retry-After``, a rate-limit window used up): the whole process waits, not
        just the request that was told."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self) -> None:
        now = self._clock()
        if self._paused_until > now:
            await anyio.sleep(self._paused_until - now)
            now = self._clock()
        if self._bucket is None:
            self._bucket = TokenBucket(self.per_minute, now)
        delay = self._bucket.reserve(now)
        if delay > 0:
            await anyio.sleep(delay)
