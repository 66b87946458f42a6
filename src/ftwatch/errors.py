"""Errors that end a command with the contract's exit codes.

Their messages are shown to users as they are: one line that names the problem and
the fix, and never a secret.
"""

from __future__ import annotations

__all__ = ["AuthRefusedError", "ConfigError", "FtwatchError"]


class FtwatchError(Exception):
    """Base of the errors that map to an exit code."""

    exit_code = 1


class ConfigError(FtwatchError):
    """Bad file, bad value, missing key, unknown notifier: exit 2."""

    exit_code = 2


class AuthRefusedError(FtwatchError):
    """The API refused the key (401/403) even after re-reading it: exit 3."""

    exit_code = 3
