"""Durations as operators write them: ``30d``, ``2h``, ``1h30m``, ``90s``, ``0s``. Pure."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"w": 604_800.0, "d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; :class:`ValueError` naming the accepted forms otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    try:
        value = float(cleaned)  # a bare number is seconds
    except ValueError:
        pass
    else:
        if not 0 <= value < math.inf:  # also NaN
            raise ValueError(f"{text!r} is not a duration: it must be 0 or more")
        return value
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(number + unit for number, unit in parts) != cleaned:
        raise ValueError(f"{text!r} is not a duration: write it like 30d, 2h, 1h30m, 90s or 0s")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """A short human reading: ``26 h``, ``3 min``, ``45 s``, ``2 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3_600:.0f} h"
    return f"{seconds / 86_400:.0f} d"
