"""Configuration mistakes in ftwatch's words: every one at once, one line each, with
where it came from and, for a near miss, the key that was meant. Pure.

pydantic says "Extra inputs are not permitted"; a user wants "unknown key
`intervl_s` (did you mean `interval_s`?)". An ``FTWATCH_…`` variable that names no key
is silently ignored by pydantic-settings: :func:`unknown_variables` finds them.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["describe_errors", "unknown_variables"]

#: Variables ftwatch reads itself, outside the settings (and the test suite's switch).
_OWN_VARIABLES = {"FTWATCH_CONFIG", "FTWATCH_REQUIRE_POSTGRES"}

#: pydantic's words -> ftwatch's.
_WORDS = {
    "Extra inputs are not permitted": "unknown key",
    "Field required": "is required",
    "Input should be a valid number, unable to parse string as a number": "must be a number",
    "Input should be a valid integer, unable to parse string as an integer": "must be a whole number",
    "Input should be a valid boolean, unable to interpret input": "must be true or false",
    "Input should be a valid string": "must be a string",
    "Input should be a valid list": "must be a list",
}


def _model_at(model: type[BaseModel], path: Iterable[str | int]) -> type[BaseModel] | None:
    """The model whose fields the last part of ``path`` names (None: not a model)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _inner(current.model_fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner(annotation: Any) -> Any:
    """A field's model: ``X``, ``list[X]``, ``X | None``."""
    for arg in typing.get_args(annotation) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        if typing.get_origin(arg) in (list, types.UnionType, typing.Union):
            found = _inner(arg)
            if found is not None:
                return found
    return annotation


def _suggestion(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    if not loc or isinstance(loc[-1], int):
        return ""
    owner = _model_at(model, loc[:-1])
    if owner is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def describe_errors(
    exc: ValidationError, model: type[BaseModel], where: str, env_prefix: str = "FTWATCH_"
) -> list[str]:
    """One line per problem: the key, what is wrong (in ftwatch's words, with a near
    miss named), and where to fix it (the file, or the variable)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        msg = str(error["msg"]).removeprefix("Value error, ")
        if loc and loc[0] in ("notifiers", "sources") and msg.startswith("invalid configuration: "):
            lines.append(msg.removeprefix("invalid configuration: "))  # a table's own wording
            continue
        words = _WORDS.get(msg) or msg.replace("Input should be ", "must be ", 1)
        dotted = ".".join(str(part) for part in loc) or "configuration"
        if words == "unknown key":
            words = f"unknown key `{loc[-1]}`{_suggestion(model, loc)}"
            dotted = ".".join(str(part) for part in loc[:-1]) or "top level"
        env_name = env_prefix + "__".join(str(p).upper() for p in loc if not isinstance(p, int))
        lines.append(f"{dotted}: {words}; fix it in {where} or {env_name}")
    return lines


def unknown_variables(environ: Mapping[str, str], model: type[BaseModel], prefix: str = "FTWATCH_") -> list[str]:
    """Each ``FTWATCH_…`` variable whose section names no key, with the one meant if
    near. (A wrong key inside a known section reaches the section and is an error.)"""
    found = []
    for name in sorted(environ):
        if not name.startswith(prefix) or name in _OWN_VARIABLES:
            continue
        section, _, rest = name[len(prefix) :].lower().partition("__")
        if section in model.model_fields:
            continue
        close = difflib.get_close_matches(section, list(model.model_fields), n=1, cutoff=0.6)
        meant = f"{prefix}{close[0].upper()}{'__' + rest.upper() if rest else ''}" if close else ""
        hint = f" (did you mean {meant}?)" if meant else ""
        found.append(f"{name} matches no configuration key and is ignored{hint}")
    return found
