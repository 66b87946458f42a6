"""``Retry-After``, as APIs and webhook receivers send it (seconds or an HTTP date)."""

from __future__ import annotations

import email.utils
import math
import time

__all__ = ["parse_retry_after"]

#: Nobody gets to park a retry for longer than this, whatever the header says.
MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait, or ``None`` if the header is absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
