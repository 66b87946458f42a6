"""The plain data ftwatch moves around: statuses, events, transitions.

Nothing here does I/O or imports more of ftwatch than the status words and the
legacy rules, so every other module (and every third-party notifier) can depend on it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from ftwatch.compat import LEGACY_PROVIDER, legacy_body
from ftwatch.statuses import builtin_state

__all__ = [
    "STALLED",
    "STATUS_CHANGED",
    "Event",
    "ModelInfo",
    "ModelListing",
    "Progress",
    "Summary",
    "Transition",
    "check_model_id",
    "format_timestamp",
    "human_status",
    "normalized_timestamp",
    "parse_timestamp",
]

#: The ``type`` of a transition's body, and of a stall alert's.
STATUS_CHANGED = "finetuned_model.status_changed"
STALLED = "finetuned_model.stalled"


_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def human_status(status: str | None) -> str:
    """``STATUS_DEPLOYING_API`` -> ``deploying api``, ``validating_files`` ->
    ``validating files``, ``InProgress`` -> ``in progress``, ``JOB_STATE_RUNNING`` ->
    ``running``; ``None`` -> ``unknown``."""
    if not status:
        return "unknown"
    short = _CAMEL.sub(" ", status.removeprefix("STATUS_").removeprefix("JOB_STATE_"))
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
    r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:(\d{2}))"  # the date and the time, its second
    r"(?:\.(\d+))?"  # a fraction
    r"([Zz]|[+-]\d{2}:?\d{2})$"  # the offset
)
_EPOCH = dt.datetime(1970, 1, 1)  # naive, UTC: isoformat() writes no offset


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
    moment, second, fraction, tz = match.groups()
    frac = int(fraction[:9].ljust(9, "0")) if fraction else 0
    if second == "60":  # a leap second: RFC 3339 allows it, datetime does not
        moment, frac = moment[:-2] + "59", 999_999_999
    offset_s = 0
    if tz not in "Zz":
        digits = tz[1:].replace(":", "")
        offset_s = (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * (-1 if tz[0] == "-" else 1)
    try:
        # The regex has checked the shape; fromisoformat (C) checks the calendar:
        # every job of every list passes here.
        delta = dt.datetime.fromisoformat(moment) - _EPOCH
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:40]!r}") from None
    return (delta.days * 86_400 + delta.seconds - offset_s) * 1_000_000_000 + frac


def format_timestamp(ns: int, digits: int = 9) -> str:
    """Integer nanoseconds since the epoch -> RFC 3339 UTC with ``digits`` fractional digits."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    # isoformat(), not strftime: a C call, half the cost, and a year always of 4 digits.
    base = (_EPOCH + dt.timedelta(seconds=seconds)).isoformat()
    fraction = f".{nanos:09d}"[: digits + 1] if digits else ""
    return f"{base}{fraction}Z"


#: How many distinct times :func:`normalized_timestamp` remembers: a list's every job's
#: ``updated_at`` for some thousands of jobs (an entry is some 200 bytes).
_NORMALIZED_KEPT = 8192


@functools.lru_cache(maxsize=_NORMALIZED_KEPT)
def normalized_timestamp(text: str) -> str:
    """``text`` (RFC 3339) as ftwatch writes times: UTC, nine fractional digits, so
    one instant is one string whatever the API's spelling. :class:`ValueError` if it
    is none. Remembered: a list tells most jobs' times again cycle after cycle, and
    parsing and writing them anew was some 3 us a job (bench/progress.py)."""
    return format_timestamp(parse_timestamp(text))


#: How many recent training losses a job's progress keeps (a sparkline's worth).
LOSS_TREND = 16


class Progress(NamedTuple):
    """How far a running job is, as far as its provider tells: the latest values only
    (and a short trend of training losses), never every step.

    A named tuple, not a frozen dataclass: one is built for every running job that
    moved, every cycle, and a tuple is built in a quarter of the time
    (``bench/progress.py``)."""

    step: int | None = None
    total_steps: int | None = None
    #: 0 to 100, where the provider says so itself (Fireworks); else from the steps.
    percent: float | None = None
    eta_ns: int | None = None
    #: Where the provider gives a countdown instead of a time (Together): resolved
    #: into ``eta_ns`` against the cycle's clock (:func:`ftwatch.progress.settle`).
    remaining_s: float | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    trained_tokens: int | None = None
    #: The latest training losses, oldest first, at most :data:`LOSS_TREND`.
    losses: tuple[float, ...] = ()

    @property
    def ratio(self) -> float | None:
        """Done, from 0 to 1: the provider's percent, else step over total."""
        if self.percent is not None:
            return min(max(self.percent / 100, 0.0), 1.0)
        if self.step is not None and self.total_steps:
            return min(max(self.step / self.total_steps, 0.0), 1.0)
        return None

    def to_body(self) -> dict[str, Any]:
        """The bodies' ``progress`` (contract: each null when unknown)."""
        ratio = self.ratio
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "percent": None if ratio is None else round(ratio * 100, 1),
            "eta": None if self.eta_ns is None else format_timestamp(self.eta_ns, digits=0),
            "train_loss": self.train_loss,
            "valid_loss": self.valid_loss,
        }

    @classmethod
    def from_body(cls, body: Any) -> Progress | None:
        """A body's (or a stored row's) ``progress`` back; ``None`` if it holds none."""
        if not isinstance(body, dict):
            return None
        eta = body.get("eta")
        return cls(
            step=_int_or_none(body.get("step")),
            total_steps=_int_or_none(body.get("total_steps")),
            percent=_float_or_none(body.get("percent")),
            eta_ns=_time_or_none(eta) if isinstance(eta, str) else _int_or_none(body.get("eta_ns")),
            train_loss=_float_or_none(body.get("train_loss")),
            valid_loss=_float_or_none(body.get("valid_loss")),
            trained_tokens=_int_or_none(body.get("trained_tokens")),
            losses=tuple(v for v in map(_float_or_none, body.get("losses") or ()) if v is not None)[-LOSS_TREND:],
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """What a job came to, told with its terminal state (nulls where unknown)."""

    duration_s: float | None = None
    steps: int | None = None
    trained_tokens: int | None = None
    final_train_loss: float | None = None
    fine_tuned_model: str | None = None

    def to_body(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_body(cls, body: Any) -> Summary | None:
        """A body's ``summary`` back; a field of the wrong type reads as unknown."""
        if not isinstance(body, dict):
            return None
        read: dict[str, Any] = {f.name: _READ[str(f.type)](body.get(f.name)) for f in dataclasses.fields(cls)}
        return cls(**read)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time_or_none(text: str) -> int | None:
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


#: How a field of each type is read back from a body (its annotation, as text).
_READ = {"int | None": _int_or_none, "float | None": _float_or_none, "str | None": _str_or_none}


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
    #: How far the job was while this was its latest status, where the provider
    #: tells (OpenAI's newest metrics event since, Bedrock's final training loss).
    progress: Progress | None = None

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
    #: For a snapshot provider: when the current status began, if
    #: the provider says (``finished_at``, ``lastModifiedTime``).
    updated_at: str | None = None
    #: What the job produced, once it has (OpenAI's ``fine_tuned_model``, Bedrock's
    #: ``customModelArn``), and why it failed, if it did.
    fine_tuned_model: str | None = None
    failure: str | None = None
    #: What the list tells of a running job's progress (Together's steps,
    #: Fireworks' percent, OpenAI's ``estimated_finish``).
    progress: Progress | None = None
    #: When the job began: nanoseconds, or the API's RFC 3339 text, parsed only when
    #: asked for (:attr:`created_at_ns`: a summary needs it once, a list every cycle).
    created: int | str | None = None

    @property
    def created_at_ns(self) -> int | None:
        """When the job began, in nanoseconds; ``None`` if unknown or unreadable."""
        if isinstance(self.created, str):
            return _time_or_none(
                self.created if self.created[-1:] in "Zz" or "+" in self.created[10:] else self.created + "Z"
            )
        return self.created

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
    provider: str = LEGACY_PROVIDER
    source: str = LEGACY_PROVIDER
    #: Snapshot providers' (not in the legacy bodies, which keep their fields): the
    #: model a job produced, and why it failed.
    fine_tuned_model: str | None = None
    failure_message: str | None = None
    #: The normalized state a plug-in source's vocabulary gave ``status``, where it
    #: differs from a built-in table's (empty: the table says it, see :attr:`state`).
    given_state: str = ""
    #: While running: how far the job is. On a terminal state: what it came to.
    progress: Progress | None = None
    summary: Summary | None = None

    @property
    def stalled(self) -> bool:
        return self.type == STALLED

    @property
    def state(self) -> str:
        """The normalized state of ``status`` (``ready``, ``running``, …)."""
        return self.given_state or builtin_state(self.status, self.provider)

    @classmethod
    def of_ftwatch(
        cls, id: str, model_id: str, model_name: str | None, status: str, at: str, **fields: Any
    ) -> Transition:
        """A transition ftwatch says itself (a stall alert, a test notification), not
        an API's event: it occurs when detected, and no user made it."""
        fields.setdefault("previous_status", None)
        return cls(id, model_id, model_name, status, occurred_at=at, user_id=None, detected_at=at, **fields)

    def in_words_of(self, provider: str, source: str, state: str) -> Transition:
        """This transition as the source says it: its provider, its name, and the
        state its vocabulary gives the status."""
        given = "" if state == builtin_state(self.status, provider) else state
        return replace(self, provider=provider, source=source, given_state=given)

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
        body: dict[str, Any] = {
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
        if not legacy_body(self.provider):
            body["fine_tuned_model"] = self.fine_tuned_model
            body["failure_message"] = self.failure_message
            if self.progress is not None:
                body["progress"] = self.progress.to_body()
            if self.summary is not None:
                body["summary"] = self.summary.to_body()
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
            # Queued by an older build: the only provider it had.
            provider=payload.get("provider", LEGACY_PROVIDER),
            source=payload.get("source", LEGACY_PROVIDER),
            fine_tuned_model=payload.get("fine_tuned_model"),
            failure_message=payload.get("failure_message"),
            progress=Progress.from_body(payload.get("progress")),
            summary=Summary.from_body(payload.get("summary")),
        ).in_words_of(
            payload.get("provider", LEGACY_PROVIDER),
            payload.get("source", LEGACY_PROVIDER),
            payload.get("state") or "",
        )
