"""Reading an API's JSON the same careful way in every source: a field of the wrong
type is one item's problem (:class:`BadDataError`, caught per model or job), an id
goes into a path only as one escaped segment."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from ftwatch import model
from ftwatch.errors import BadDataError
from ftwatch.sources.base import InvalidModelIdError, ModelDataError

__all__ = ["BadDataError", "check_id", "id_and_status", "item_id", "optional_str", "parsed", "path_of"]

_T = TypeVar("_T")


def optional_str(raw: dict[str, Any], field: str) -> str | None:
    """A text field; absent, null and empty are all ``None``."""
    value = raw.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadDataError(f"{field} is a {type(value).__name__}, not a string")
    return value


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
