"""Errors that end a command with the contract's exit codes.

Their messages are shown to users as they are: one line that names the problem and
the fix, and never a secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["AuthRefusedError", "ConfigError", "FtwatchError", "first_problem"]


class FtwatchError(Exception):
    """Base of the errors that map to an exit code."""

    exit_code = 1


class ConfigError(FtwatchError):
    """Bad file, bad value, missing key, unknown notifier: exit 2."""

    exit_code = 2


class AuthRefusedError(FtwatchError):
    """The API refused the key (401/403) even after re-reading it: exit 3."""

    exit_code = 3


def first_problem(exc: ValidationError) -> tuple[tuple[str | int, ...], str, int]:
    """A pydantic error's first location, its message, and how many errors there are:
    every one-line configuration message is made from these."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    return tuple(first["loc"]), first["msg"].removeprefix("Value error, "), len(errors)
