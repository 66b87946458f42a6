"""The plain data ftwatch moves around: statuses, events, transitions.

Nothing here does I/O or imports anything else of ftwatch, so every other module
(and every third-party notifier) can depend on it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KNOWN_STATUSES",
    "Event",
    "ModelInfo",
    "ModelListing",
    "Transition",
    "format_timestamp",
    "human_status",
    "normalize_status",
    "parse_timestamp",
]

#: The statuses of Cohere's fine-tuning API v1. Others may appear later; they pass
#: through as they are.
KNOWN_STATUSES: tuple[str, ...] = (
    "STATUS_UNSPECIFIED",
    "STATUS_FINETUNING",
    "STATUS_DEPLOYING_API",
    "STATUS_READY",
    "STATUS_FAILED",
    "STATUS_DELETED",
    "STATUS_TEMPORARILY_OFFLINE",
    "STATUS_PAUSED",
    "STATUS_QUEUED",
)


def normalize_status(name: str) -> str | None:
    """Return the long name of a known status given as ``READY`` or ``STATUS_READY``.

    Case does not matter. ``None`` when the name is no known status.
    """
    upper = name.strip().upper()
    long = upper if upper.startswith("STATUS_") else f"STATUS_{upper}"
    return long if long in KNOWN_STATUSES else None


def human_status(status: str | None) -> str:
    """``STATUS_DEPLOYING_API`` -> ``deploying api``; ``None`` -> ``unknown``."""
    if not status:
        return "unknown"
    short = status.removeprefix("STATUS_")
    return short.replace("_", " ").lower()


_TIMESTAMP = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})$"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_timestamp(text: str) -> int:
    """Parse an RFC 3339 timestamp into integer nanoseconds since the epoch.

    The API sends 6 to 9 fractional digits; :class:`datetime.datetime` keeps only 6,
    and two events a few nanoseconds apart must still sort apart, hence integers.
    Raises :class:`ValueError` on anything that is not RFC 3339.
    """
    match = _TIMESTAMP.match(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    tz = match["tz"].upper()
    base = dt.datetime.fromisoformat(match["base"].replace("t", "T").replace(" ", "T"))
    base = base.replace(tzinfo=dt.UTC if tz == "Z" else dt.datetime.strptime(tz, "%z").tzinfo)
    delta = base - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    frac = (match["frac"] or "").ljust(9, "0")
    return seconds * 1_000_000_000 + int(frac)


def format_timestamp(ns: int, digits: int = 9) -> str:
    """Integer nanoseconds since the epoch -> RFC 3339 UTC with ``digits`` fractional digits."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = _EPOCH + dt.timedelta(seconds=seconds)
    fraction = f".{nanos:09d}"[: digits + 1] if digits else ""
    return f"{base:%Y-%m-%dT%H:%M:%S}{fraction}Z"


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a fine-tuned model's event history."""

    status: str
    created_at_ns: int
    user_id: str | None = None

    @property
    def created_at(self) -> str:
        return format_timestamp(self.created_at_ns)

    def sort_key(self) -> tuple[int, str, str]:
        # The API's order is unreliable (its docs contradict themselves), so events
        # are always ordered by time, and ties are broken the same way every time.
        return (self.created_at_ns, self.status, self.user_id or "")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the model list says of one fine-tuned model."""

    id: str
    name: str | None
    status: str
    #: As the API wrote it: compared as text every cycle, parsed only when needed.
    updated_at: str | None = None

    @property
    def updated_at_ns(self) -> int | None:
        """``updated_at`` in nanoseconds; ``None`` if absent or unreadable."""
        if not self.updated_at:
            return None
        try:
            return parse_timestamp(self.updated_at)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class ModelListing:
    """The whole model list, and how many requests (pages) it took to read."""

    models: list[ModelInfo]
    requests: int


@dataclass(frozen=True, slots=True)
class Transition:
    """One new event of one model, as notifiers receive it.

    ``id`` is stable: the same event always yields the same id, across restarts.
    """

    id: str
    model_id: str
    model_name: str | None
    status: str
    previous_status: str | None
    occurred_at: str
    user_id: str | None
    detected_at: str
    type: str = field(default="finetuned_model.status_changed")

    def to_payload(self) -> dict[str, Any]:
        """The webhook body of the contract, field for field."""
        return {
            "id": self.id,
            "type": self.type,
            "model_id": self.model_id,
            "model_name": self.model_name,
            "status": self.status,
            "previous_status": self.previous_status,
            "occurred_at": self.occurred_at,
            "user_id": self.user_id,
            "detected_at": self.detected_at,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Transition:
        return cls(
            id=payload["id"],
            model_id=payload["model_id"],
            model_name=payload.get("model_name"),
            status=payload["status"],
            previous_status=payload.get("previous_status"),
            occurred_at=payload["occurred_at"],
            user_id=payload.get("user_id"),
            detected_at=payload["detected_at"],
            type=payload.get("type", "finetuned_model.status_changed"),
        )
