"""What a source is: the protocol every provider follows, its errors, and what it reports.

A source type is a class registered in the entry-point group ``ftwatch.sources``
under its ``type`` name, with a ``from_config(config, deps)`` class method. The poller
knows only :class:`Source`; the application builds sources through the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from ftwatch.errors import ConfigError
from ftwatch.model import Event, ModelInfo, ModelListing
from ftwatch.ratelimit import RateLimiter
from ftwatch.secrets import SecretProvider

__all__ = [
    "ApiWait",
    "InvalidModelIdError",
    "ModelDataError",
    "ModelNotFoundError",
    "RequestDone",
    "Source",
    "SourceDeps",
    "SourceError",
    "SourceType",
    "SourceUnavailableError",
]


class SourceError(Exception):
    """The API answered, but not with what was asked (a 400, say)."""


class SourceUnavailableError(SourceError):
    """The API could not be reached or kept failing after every retry."""


class ModelNotFoundError(SourceError):
    """404 for one model: it was deleted or the id is wrong."""


class ModelDataError(SourceError):
    """The API answered for one model with something unreadable (a field of the wrong
    type, say). Bad input for that model only: the others go on."""


class InvalidModelIdError(ConfigError):
    """An id that cannot be one path segment of the API (``/``, ``..``): exit 2."""


class Source(Protocol):
    """What the poller needs of a fine-tuning provider."""

    async def list_models(self) -> ModelListing:
        """Every fine-tuned model visible to the key."""
        ...

    async def get_model(self, model_id: str) -> ModelInfo: ...

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        """The model's events; with ``newer_than_ns`` at least those at or after it."""
        ...


@dataclass(frozen=True, slots=True)
class RequestDone:
    """One HTTP exchange with the API."""

    endpoint: str
    #: The status code, or the name of the error (``ConnectError``).
    code: str
    seconds: float


@dataclass(frozen=True, slots=True)
class ApiWait:
    """The client is waiting on purpose before its next request (the API said
    ``Retry-After``): alive, not stuck."""

    endpoint: str
    seconds: float
    #: What the API asked for, before the cap.
    asked_s: float


def _ignore(_: object) -> None:
    pass


@dataclass(frozen=True, slots=True)
class SourceDeps:
    """What the application lends a source: the client, the key, the budget, and
    whom to tell about requests and deliberate waits."""

    http: httpx.AsyncClient
    key: SecretProvider
    limiter: RateLimiter | None = None
    on_request: Callable[[RequestDone], None] = field(default=_ignore)
    on_wait: Callable[[ApiWait], None] = field(default=_ignore)


class SourceType(Protocol):
    """The class an entry point of ``ftwatch.sources`` names."""

    @classmethod
    def from_config(cls, config: Any, deps: SourceDeps) -> Source: ...
