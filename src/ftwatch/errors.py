"""Every error of ftwatch, in one tree, and the exit codes the contract gives them.

Their messages are shown to users as they are: one line that names the problem and
the fix, and never a secret. What reaches the command line ends it with the root's
``exit_code``; everything else is caught where it belongs (one model's, one
delivery's, one cycle's) and counted there::

    FtwatchError                      exit 1: the run could not do its job
    ├── ConfigError                   exit 2: a bad file, value, key or id; fix it and rerun
    │   ├── InvalidModelIdError       an id that cannot be one path segment of an API
    │   └── StoreOpenError            the state cannot be opened, or is of a newer build
    ├── AuthRefusedError              exit 3: the API refused the key, even read again
    ├── StoreUnreachableError         the state's database did not answer in time
    ├── StoreError                    one read or write of the state failed (rolled back)
    │   └── LeaseLostError            another replica leads now: this one steps down
    ├── SourceError                   the API answered, but not with what was asked
    │   ├── SourceUnavailableError    unreachable, or failing after every retry
    │   ├── ModelNotFoundError        404 for one model: deleted, or a wrong id
    │   ├── ModelDataError            one model's answer is unreadable
    │   └── JobRefusedError           403 on one job's own endpoint: that job's failure
    ├── BadDataError                  one item of an API's body is unreadable
    ├── DeliveryFailedError           one delivery attempt failed (``permanent``: for good)
    └── WebhookRejectedError          a push that is no genuine, fresh message

The modules that raise them re-export them (``ftwatch.sources.base.SourceError``,
``ftwatch.notifiers.base.DeliveryFailedError``), where plug-ins have always found them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "AuthRefusedError",
    "BadDataError",
    "ConfigError",
    "DeliveryFailedError",
    "FtwatchError",
    "InvalidModelIdError",
    "JobRefusedError",
    "LeaseLostError",
    "ModelDataError",
    "ModelNotFoundError",
    "SourceError",
    "SourceUnavailableError",
    "StoreError",
    "StoreOpenError",
    "StoreUnreachableError",
    "WebhookRejectedError",
    "first_problem",
]


class FtwatchError(Exception):
    """The root: what ends a command maps to its ``exit_code``."""

    exit_code = 1


class ConfigError(FtwatchError):
    """Bad file, bad value, missing key, unknown notifier: exit 2."""

    exit_code = 2


class InvalidModelIdError(ConfigError):
    """An id that cannot be one path segment of the API (``/``, ``..``): exit 2."""


class StoreOpenError(ConfigError):
    """The state cannot be opened, or is of a newer build: exit 2."""


class AuthRefusedError(FtwatchError):
    """The API refused the key (401/403) even after re-reading it: exit 3."""

    exit_code = 3


class StoreUnreachableError(FtwatchError):
    """The state's database server did not answer in time: exit 1 (it is down, and
    the configuration may well be right)."""


class StoreError(FtwatchError):
    """Reading or writing the state failed (locked too long, disk full, I/O error).

    The caller counts it as one failed cycle or delivery attempt and goes on: the
    transaction was rolled back, so nothing half-written remains.
    """


class LeaseLostError(StoreError):
    """The lease was not ours any more at commit (another process leads): the cycle
    was rolled back, and this process steps down."""


class SourceError(FtwatchError):
    """The API answered, but not with what was asked (a 400, say)."""


class SourceUnavailableError(SourceError):
    """The API could not be reached or kept failing after every retry."""


class ModelNotFoundError(SourceError):
    """404 for one model: it was deleted or the id is wrong."""


class ModelDataError(SourceError):
    """The API answered for one model with something unreadable (a field of the wrong
    type, say). Bad input for that model only: the others go on."""


class JobRefusedError(SourceError):
    """The API refused one job's endpoint (403) while the key works: that job's failure."""


class BadDataError(FtwatchError):
    """One item of a body is unreadable."""


class DeliveryFailedError(FtwatchError):
    """One attempt failed. ``permanent``: trying again cannot help (a 4xx, say)."""

    def __init__(self, detail: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class WebhookRejectedError(FtwatchError):
    """Not a genuine, fresh message: the reason, for the log (never the secret)."""


def first_problem(exc: ValidationError) -> tuple[tuple[str | int, ...], str, int]:
    """A pydantic error's first location, its message, and how many errors there are:
    every one-line configuration message is made from these."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    return tuple(first["loc"]), first["msg"].removeprefix("Value error, "), len(errors)
