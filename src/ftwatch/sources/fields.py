"""Reading an API's JSON the same careful way in every source: a field of the wrong
type is one item's problem (:class:`BadDataError`, caught per model or job), an id
goes into a path only as one escaped segment."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ftwatch import model
from ftwatch.errors import BadDataError
from ftwatch.sources.base import InvalidModelIdError, ModelDataError
from ftwatch.statuses import Vocabulary
from ftwatch.textsafe import FAILURE_MAX

__all__ = [
    "BadDataError",
    "NoHistory",
    "check_id",
    "id_and_status",
    "item_id",
    "now_as_history",
    "optional_count",
    "optional_number",
    "optional_str",
    "parsed",
    "path_of",
    "resource_job",
]

_T = TypeVar("_T")


def optional_str(raw: dict[str, Any], field: str) -> str | None:
    """A text field; absent, null and empty are all ``None``."""
    value = raw.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadDataError(f"{field} is a {type(value).__name__}, not a string")
    return value


def optional_count(raw: Any, field: str) -> int | None:
    """A count (steps, tokens): a whole number not below zero, else ``None``. Progress
    is a view: an odd value there is no reason to drop the job."""
    value = raw.get(field) if isinstance(raw, dict) else None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def optional_number(raw: Any, *fields: str) -> float | None:
    """The first of ``fields`` that holds a finite number not below zero (a loss, a
    percent, seconds), else ``None``."""
    for field in fields:
        value = raw.get(field) if isinstance(raw, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < float("inf"):
            return float(value)
    return None


def id_and_status(raw: Any, id_field: str) -> tuple[str, str]:
    """A job's id (one path segment) and status, both required; a snapshot provider's
    entry without either is unreadable."""
    if not isinstance(raw, dict) or not isinstance(raw.get(id_field), str):
        raise BadDataError(f"a job without {id_field}")
    status = optional_str(raw, "status")
    if status is None:
        raise BadDataError("a job without a status")
    return check_id(raw[id_field]), status


def check_id(model_id: str) -> str:
    """The id as it is, or :class:`InvalidModelIdError` if it could reach another path."""
    try:
        return model.check_model_id(model_id)
    except ValueError as exc:
        raise InvalidModelIdError(f"{exc}; check it with 'ftwatch models'") from None


def path_of(collection: str, model_id: str, tail: str = "") -> str:
    # Escaped as one segment: an id can never climb to another path of the API host,
    # which would receive the key.
    return f"{collection}/{urllib.parse.quote(check_id(model_id), safe='')}{tail}"


def parsed(model_id: str, parse: Callable[[Any], _T], raw: Any, what: str = "model") -> _T:
    """``parse(raw)``, or :class:`ModelDataError` for that one model."""
    try:
        return parse(raw)
    except (BadDataError, InvalidModelIdError, ValueError) as exc:
        raise ModelDataError(f"{what} {model_id[:80]}: {exc}") from None


def item_id(raw: Any, key: str) -> str:
    """How a list entry that cannot be read is named: its id, cut short, else ``?``."""
    value = raw.get(key) if isinstance(raw, dict) else None
    return value[:80] if isinstance(value, str) else "?"


def now_as_history(info: model.ModelInfo) -> list[model.Event]:
    """The history of a job whose provider keeps none: the job as it is now, dated
    when its status began (where the provider says), with its failure's reason."""
    return [model.Event(info.status, info.updated_at_ns, message=info.failure, progress=info.progress)]


class _GetsModel(Protocol):
    async def get_model(self, model_id: str) -> model.ModelInfo: ...


class NoHistory:
    """A source whose provider keeps no history of a job's statuses: what happened
    is the job as it is now (:func:`now_as_history`: dated when its status began,
    with its failure's reason)."""

    async def list_events(self: _GetsModel, model_id: str, newer_than_ns: int | None = None) -> list[model.Event]:
        return now_as_history(await self.get_model(model_id))


def _text_at(raw: dict[str, Any], path: tuple[str, ...]) -> str | None:
    value: Any = raw
    for key in path[:-1]:
        value = value.get(key) if isinstance(value, dict) else None
    return optional_str(value, path[-1]) if isinstance(value, dict) else None


def _rfc3339(raw: dict[str, Any], field: str) -> str | None:
    """A proto3 JSON time as ftwatch writes times, if it reads as one (else none: the
    moment ftwatch noticed stands in for it)."""
    value = optional_str(raw, field)
    if value is None:
        return None
    try:
        return model.normalized_timestamp(value)
    except ValueError:
        return None


def resource_job(
    raw: Any,
    words: Vocabulary,
    *,
    display: str,
    reason: tuple[str, ...],
    ended_at: str,
    produced: tuple[str, ...],
) -> model.ModelInfo:
    """A job as a resource-named API (Google's, Fireworks') writes one: ``name`` ending
    in its id, a ``state``, its display name, the failure's reason and the model it
    made at these paths, and when it ended (else ``updateTime``)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise BadDataError("a job without name")
    job_id = check_id(raw["name"].rpartition("/")[2])
    state = optional_str(raw, "state")
    if state is None:
        raise BadDataError("a job without a state")
    normalized = words.state_of(state)
    message = _text_at(raw, reason)
    return model.ModelInfo(
        id=job_id,
        name=optional_str(raw, display),
        status=state,
        updated_at=(_rfc3339(raw, ended_at) if words.is_terminal(state) else None) or _rfc3339(raw, "updateTime"),
        fine_tuned_model=_text_at(raw, produced) if normalized == "ready" else None,
        failure=message[:FAILURE_MAX] if message and normalized == "failed" else None,
        created=optional_str(raw, "createTime"),
    )
