"""What a source is: the protocol every provider follows, its errors, and what it reports.

A source type is a class registered in the entry-point group ``ftwatch.sources``
under its ``type`` name, with a ``from_config(config, deps)`` class method. The poller
knows only :class:`~ftwatch.sources.protocol.Source`; the application builds sources
through the registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Protocol, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ftwatch.errors import (
    InvalidModelIdError,
    ModelDataError,
    ModelNotFoundError,
    SourceError,
    SourceUnavailableError,
)
from ftwatch.model import check_model_id
from ftwatch.ratelimit import RateLimiter
from ftwatch.secrets import SecretProvider
from ftwatch.sources.protocol import Source, SourceKind, TakesPushes
from ftwatch.statuses import Vocabulary

__all__ = [
    "ApiWait",
    "FromConfig",
    "InvalidModelIdError",
    "ModelDataError",
    "ModelNotFoundError",
    "RequestDone",
    "RequestPolicy",
    "Source",
    "SourceConfig",
    "SourceContext",
    "SourceError",
    "SourceKind",
    "SourceSpec",
    "SourceType",
    "SourceUnavailableError",
    "http_url",
]


@dataclass(frozen=True, slots=True)
class RequestDone:
    """One HTTP exchange with the API."""

    endpoint: str
    #: The status code, or the name of the error (``ConnectError``).
    code: str
    seconds: float
    #: The configured source that made it (set by the application).
    source: str = ""


@dataclass(frozen=True, slots=True)
class ApiWait:
    """The client is waiting on purpose before its next request (the API said
    ``Retry-After``): alive, not stuck."""

    endpoint: str
    seconds: float
    #: What the API asked for, before the cap.
    asked_s: float
    #: The configured source that waits (set by the application).
    source: str = ""


def _ignore(_: object) -> None:
    pass


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What the application lends a source: the client, the key (Cohere's, from
    ``[cohere]``), the budget, the environment (for a type's own variables), and
    whom to tell about requests and deliberate waits."""

    http: httpx.AsyncClient
    key: SecretProvider | None = None
    limiter: RateLimiter | None = None
    on_request: Callable[[RequestDone], None] = field(default=_ignore)
    on_wait: Callable[[ApiWait], None] = field(default=_ignore)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class RequestPolicy(BaseModel):
    """How one API is asked: the keys ``[cohere]`` and every ``[[sources]]`` table have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    #: Half of Cohere's documented 500/min: the key is shared with everything else.
    max_requests_per_minute: Annotated[int, Field(gt=0)] = 250
    #: Attempts per API request before a cycle gives up and tries again next time.
    max_attempts: Annotated[int, Field(ge=1)] = 5
    retry_initial_s: Annotated[float, Field(gt=0)] = 0.5
    retry_max_s: Annotated[float, Field(gt=0)] = 30.0
    #: The longest a request waits when the API answers 429 with ``Retry-After``:
    #: past this the cycle goes on (and fails), instead of one request stalling it.
    max_retry_after_s: Annotated[float, Field(ge=0)] = 60.0
    #: How long a refused key (401/403) is read again and retried before giving up
    #: with exit 3: a rotated Secret takes a moment to reach every pod.
    auth_retry_s: Annotated[float, Field(ge=0)] = 10.0
    #: The most pages one listing may take: an API that answers "more" for ever
    #: (a new cursor each time) fails that source's cycle instead of holding it.
    max_pages: Annotated[int, Field(ge=1, le=1_000_000)] = 1_000


class SourceConfig(RequestPolicy):
    """The keys every ``[[sources]]`` table has; a type adds its own."""

    type: str
    #: Unique among the sources; the bodies' ``source``, and where its models live
    #: in the state (so renaming a source starts it afresh). Default: the type.
    name: str | None = None
    #: Model or job ids; empty: everything the credentials can see.
    models: list[str] = Field(default_factory=list)

    @property
    def where(self) -> str:
        """The table as messages name it (``[[sources]] openai-prod``)."""
        return f"[[sources]] {self.name or self.type}"

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("must be lowercase letters, digits, '-' or '_' (e.g. \"openai-prod\")")
        return value

    @field_validator("models")
    @classmethod
    def _one_segment(cls, value: list[str]) -> list[str]:
        return [check_model_id(model_id) for model_id in value]


def http_url(value: str) -> str:
    """A base URL's check: http(s) only, no trailing slash."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One configured source: its name, type, section and models, and where its
    models live in the state ("" for the first Cohere source, as before sources)."""

    name: str
    type: str
    config: Any
    models: list[str]
    namespace: str

    @property
    def webhook(self) -> Any:
        """The source's ``[sources.webhook]`` table (its pushes), or ``None``: the one
        place a source's optional webhook is looked up."""
        return self.config.webhook if isinstance(self.config, TakesPushes) else None


class FromConfig:
    """A built-in source type whose constructor takes what ``from_config`` is given
    (its table and the context): the one ``from_config`` they all share. Its class
    line names what the engine asks of every source type (a snapshot source unless it
    says otherwise)::

        class TogetherSource(FromConfig, provider="together", vocabulary=TOGETHER, config_model=TogetherSourceConfig):
    """

    provider: str
    kind: SourceKind = SourceKind.SNAPSHOT
    vocabulary: Vocabulary
    config_model: ClassVar[type[BaseModel]]

    def __init_subclass__(
        cls, *, provider: str, vocabulary: Vocabulary, config_model: type[BaseModel], **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.provider, cls.vocabulary, cls.config_model = provider, vocabulary, config_model

    @classmethod
    def from_config(cls, config: Any, deps: SourceContext) -> Self:
        # Each subclass's __init__ takes (config, deps); this class declares none.
        return cls(config, deps)  # type: ignore[call-arg]


class SourceType(Protocol):
    """The class an entry point of ``ftwatch.sources`` names."""

    #: The type's ``[[sources]]`` table (a :class:`SourceConfig`).
    config_model: ClassVar[type[BaseModel]]

    @classmethod
    def from_config(cls, config: Any, deps: SourceContext) -> Source: ...
