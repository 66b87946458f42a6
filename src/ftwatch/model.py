"""The plain data ftwatch moves around: statuses, events, transitions.

Nothing here does I/O or imports anything else of ftwatch, so every other module
(and every third-party notifier) can depend on it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KNOWN_STATUSES",
    "PROVIDER_STATES",
    "Event",
    "ModelInfo",
    "ModelListing",
    "Transition",
    "check_model_id",
    "filter_matches",
    "filter_word",
    "format_timestamp",
    "human_status",
    "normalize_status",
    "parse_timestamp",
    "provider_word",
    "state_of",
    "status_filter",
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


#: The ``type`` of a transition's body, and of a stall alert's.
STATUS_CHANGED = "finetuned_model.status_changed"
STALLED = "finetuned_model.stalled"

#: The normalized states every provider's statuses map to (bodies' ``state``).
STATES: tuple[str, ...] = ("queued", "running", "ready", "failed", "cancelled", "paused", "deleted", "unknown")

#: The states a job does not leave by itself.
TERMINAL_STATES: frozenset[str] = frozenset({"ready", "failed", "cancelled", "deleted"})

_COHERE_STATES: dict[str, str] = {
    "STATUS_QUEUED": "queued",
    "STATUS_FINETUNING": "running",
    "STATUS_DEPLOYING_API": "running",
    "STATUS_READY": "ready",
    "STATUS_FAILED": "failed",
    "STATUS_DELETED": "deleted",
    "STATUS_PAUSED": "paused",
    "STATUS_TEMPORARILY_OFFLINE": "paused",
    "STATUS_UNSPECIFIED": "unknown",
}

#: OpenAI's fine-tuning job statuses (API reference, ``FineTuningJob.status``).
_OPENAI_STATES: dict[str, str] = {
    "validating_files": "queued",
    "queued": "queued",
    "running": "running",
    "succeeded": "ready",
    "failed": "failed",
    "cancelled": "cancelled",
}

#: Bedrock's ``ModelCustomizationJobStatus``. ``Stopping`` is still on its way (it
#: may yet end ``Stopped``): running until it gets there.
_BEDROCK_STATES: dict[str, str] = {
    "InProgress": "running",
    "Completed": "ready",
    "Failed": "failed",
    "Stopping": "running",
    "Stopped": "cancelled",
}

#: Each built-in provider's words and the states they mean.
PROVIDER_STATES: dict[str, dict[str, str]] = {
    "cohere": _COHERE_STATES,
    "openai": _OPENAI_STATES,
    "bedrock": _BEDROCK_STATES,
}


def state_of(status: str | None, provider: str = "cohere") -> str:
    """A provider's status as its normalized state; a word nobody knows yet is
    ``unknown``. A plug-in's provider may use the normalized words themselves."""
    table = PROVIDER_STATES.get(provider)
    if table is None:
        word = (status or "").lower()
        return word if word in STATES else "unknown"
    return table.get(status or "", "unknown")


def normalize_status(name: str) -> str | None:
    """Return the long name of a known Cohere status given as ``READY`` or ``STATUS_READY``.

    Case does not matter. ``None`` when the name is no known status.
    """
    upper = name.strip().upper()
    long = upper if upper.startswith("STATUS_") else f"STATUS_{upper}"
    return long if long in KNOWN_STATUSES else None


def provider_word(name: str) -> str | None:
    """Another provider's status as that provider spells it (``Completed``,
    ``succeeded``), whatever the case it is given in; ``None`` if none has it."""
    wanted = name.strip().lower()
    for provider, table in PROVIDER_STATES.items():
        if provider == "cohere":
            continue
        for word in table:
            if word.lower() == wanted:
                return word
    return None


def filter_word(name: str) -> str | None:
    """A notifier ``statuses`` entry in its canonical spelling, or ``None`` if it is
    no status of any provider and no normalized state. A Cohere word first (so
    ``paused`` keeps meaning ``STATUS_PAUSED``, as it always has), then a state
    (``running``), then another provider's word (``Completed``)."""
    cohere = normalize_status(name)
    if cohere is not None:
        return cohere
    if name.strip().lower() in STATES:
        return name.strip().lower()
    return provider_word(name)


_STATE_MARK = "state:"


def status_filter(words: Iterable[str]) -> frozenset[str]:
    """What a notifier's ``statuses`` match: provider words, and ``state:…`` tokens.

    A Cohere word also matches the other providers' same-named words (``FAILED``:
    OpenAI's ``failed``, Bedrock's ``Failed``), and its state when that state means
    just this status to Cohere (``READY``: every provider's ``ready``). ``PAUSED``
    keeps its narrow meaning: the state ``paused`` also holds Cohere's
    ``TEMPORARILY_OFFLINE``.
    """
    tokens: set[str] = set()
    for raw in words:
        word = filter_word(raw) or raw
        if word in _COHERE_STATES:
            tokens.add(word)
            short = word.removeprefix("STATUS_").lower()
            if (other := provider_word(short)) is not None:
                tokens.add(other)
            state = _COHERE_STATES[word]
            if [s for s, st in _COHERE_STATES.items() if st == state] == [word]:
                tokens.add(_STATE_MARK + state)
        elif word in STATES:
            tokens.add(_STATE_MARK + word)
        else:
            tokens.add(word)
    return frozenset(tokens)


def filter_matches(tokens: frozenset[str], status: str, state: str) -> bool:
    return status in tokens or _STATE_MARK + state in tokens


_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def human_status(status: str | None) -> str:
    """``STATUS_DEPLOYING_API`` -> ``deploying api``, ``validating_files`` ->
    ``validating files``, ``InProgress`` -> ``in progress``; ``None`` -> ``unknown``."""
    if not status:
        return "unknown"
    short = _CAMEL.sub(" ", status.removeprefix("STATUS_"))
    return short.replace("_", " ").lower()


def check_model_id(model_id: str) -> str:
    """The id as it is, or :class:`ValueError` if it is no single path segment.

    Ids go into API paths; ``/`` or ``..`` would climb to another path of the API
    host, which would receive the bearer key.
    """
    if not model_id or model_id in (".", "..") or "/" in model_id or not model_id.isprintable():
        raise ValueError(f"invalid model id {model_id[:60]!r}: an id is one path segment (no '/', not '.' or '..')")
    return model_id


_TIMESTAMP = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})"
    r"(?:\.(?P<frac>\d+))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:?\d{2})$"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_timestamp(text: str) -> int:
    """Parse an RFC 3339 timestamp into integer nanoseconds since the epoch.

    The API sends 6 to 9 fractional digits; :class:`datetime.datetime` keeps only 6,
    and two events a few nanoseconds apart must still sort apart, hence integers.
    Everything RFC 3339 allows is read: any number of fractional digits (past the
    ninth they are dropped), ``z`` or ``Z``, ``t`` or a space, an offset with or
    without its colon (``+0000``), and a leap second (``:60``, taken as the last
    nanosecond of its minute, so it still sorts after ``:59``).
    Raises :class:`ValueError` on anything else.
    """
    match = _TIMESTAMP.match(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}")
    hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"])
    frac = int((match["frac"] or "")[:9].ljust(9, "0"))
    if second == 60:  # a leap second: RFC 3339 allows it, datetime does not
        second, frac = 59, 999_999_999
    tz = match["tz"].upper()
    if tz == "Z":
        offset_s = 0
    else:
        digits = tz[1:].replace(":", "")
        offset_s = (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * (-1 if tz[0] == "-" else 1)
    try:
        day = dt.date.fromisoformat(match["date"])
        moment = dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}") from None
    delta = moment - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds - offset_s
    return seconds * 1_000_000_000 + frac


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
    #: ``None`` when the API gave no usable ``created_at``: such an event is still
    #: reported, in the order it was first seen.
    created_at_ns: int | None
    user_id: str | None = None
    #: What the provider wrote with it (a failure's reason), where it writes one.
    message: str | None = None

    @property
    def created_at(self) -> str | None:
        return None if self.created_at_ns is None else format_timestamp(self.created_at_ns)

    def sort_key(self) -> tuple[int, int, str, str]:
        # The API's order is unreliable (its docs contradict themselves), so events
        # are always ordered by time, and ties are broken the same way every time.
        # Undated events sort last.
        if self.created_at_ns is None:
            return (1, 0, self.status, self.user_id or "")
        return (0, self.created_at_ns, self.status, self.user_id or "")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the model list says of one fine-tuned model."""

    id: str
    name: str | None
    status: str
    #: As the API wrote it: compared as text every cycle, parsed only when needed.
    #: For a snapshot provider (OpenAI, Bedrock): when the current status began, if
    #: the provider says (``finished_at``, ``lastModifiedTime``).
    updated_at: str | None = None
    #: What the job produced, once it has (OpenAI's ``fine_tuned_model``, Bedrock's
    #: ``customModelArn``), and why it failed, if it did.
    fine_tuned_model: str | None = None
    failure: str | None = None

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
    #: Entries of the list that could not be read: id (or ``?``) -> why.
    rejected: dict[str, str] = field(default_factory=dict)


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
    type: str = field(default=STATUS_CHANGED)
    #: A stall alert's: when the model entered ``status``, and how long it has stayed.
    since: str | None = None
    stalled_for_s: float | None = None
    #: Which API and which configured source it came from.
    provider: str = "cohere"
    source: str = "cohere"
    #: Snapshot providers' (not in Cohere's bodies, which keep their fields): the
    #: model a job produced, and why it failed.
    fine_tuned_model: str | None = None
    failure_message: str | None = None

    @property
    def stalled(self) -> bool:
        return self.type == STALLED

    @property
    def state(self) -> str:
        """The normalized state of ``status`` (``ready``, ``running``, …)."""
        return state_of(self.status, self.provider)

    def to_payload(self) -> dict[str, Any]:
        """The webhook body of the contract, field for field."""
        if self.stalled:
            return {
                "id": self.id,
                "type": self.type,
                "model_id": self.model_id,
                "model_name": self.model_name,
                "provider": self.provider,
                "source": self.source,
                "status": self.status,
                "state": self.state,
                "since": self.since,
                "stalled_for_s": self.stalled_for_s,
                "detected_at": self.detected_at,
            }
        body = {
            "id": self.id,
            "type": self.type,
            "model_id": self.model_id,
            "model_name": self.model_name,
            "status": self.status,
            "previous_status": self.previous_status,
            "occurred_at": self.occurred_at,
            "user_id": self.user_id,
            "detected_at": self.detected_at,
            "provider": self.provider,
            "source": self.source,
            "state": self.state,
        }
        if self.provider != "cohere":
            body["fine_tuned_model"] = self.fine_tuned_model
            body["failure_message"] = self.failure_message
        return body

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Transition:
        return cls(
            id=payload["id"],
            model_id=payload["model_id"],
            model_name=payload.get("model_name"),
            status=payload["status"],
            previous_status=payload.get("previous_status"),
            occurred_at=payload.get("occurred_at") or payload["detected_at"],
            user_id=payload.get("user_id"),
            detected_at=payload["detected_at"],
            type=payload.get("type", STATUS_CHANGED),
            since=payload.get("since"),
            stalled_for_s=payload.get("stalled_for_s"),
            # Queued by an older build: Cohere's, the only provider it had.
            provider=payload.get("provider", "cohere"),
            source=payload.get("source", "cohere"),
            fine_tuned_model=payload.get("fine_tuned_model"),
            failure_message=payload.get("failure_message"),
        )
