"""What a notifier is: the protocol every built-in and plug-in notifier follows.

A notifier type is a class registered in the entry-point group ``ftwatch.notifiers``
under its ``type`` name. It has a pydantic ``config_model`` (a subclass of
:class:`NotifierConfig`) and a ``from_config(config, context)`` class method that
returns a :class:`Notifier`. Notifiers know only :mod:`ftwatch.model`: the outbox,
the retries and the pacing are the dispatcher's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any, ClassVar, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ftwatch.model import Transition, normalize_status
from ftwatch.retry_after import parse_retry_after
from ftwatch.templates import Template, compile_template

__all__ = [
    "DeliveryFailedError",
    "Notifier",
    "NotifierConfig",
    "NotifierContext",
    "NotifierType",
    "TemplatedConfig",
    "check_response",
    "host_of",
    "post_json",
]


class NotifierConfig(BaseModel):
    """What every notifier's configuration has; each type adds its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    #: Optional stable name. It keys the notifier's queue in the outbox, so the
    #: queue survives a change of URL when a name is set.
    name: str | None = None
    statuses: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)

    @field_validator("statuses")
    @classmethod
    def _known_statuses(cls, value: list[str]) -> list[str]:
        normalized = []
        for name in value:
            long = normalize_status(name)
            if long is None:
                raise ValueError(f"{name!r} is no known status (use e.g. READY, FAILED, PAUSED, DELETED)")
            normalized.append(long)
        return normalized


class TemplatedConfig(NotifierConfig):
    """A notifier whose message text a ``template`` may word (sandboxed Jinja2)."""

    template: str | None = None

    @field_validator("template")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_template(value)
        return value

    def compiled_template(self) -> Template | None:
        return compile_template(self.template) if self.template is not None else None


class DeliveryFailedError(Exception):
    """One attempt failed. ``permanent``: trying again cannot help (a 4xx, say)."""

    def __init__(self, detail: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class NotifierContext:
    """What the daemon lends every notifier."""

    http: httpx.AsyncClient
    stdout: IO[str]


@runtime_checkable
class Notifier(Protocol):
    """Delivers transitions somewhere. ``send`` raises :class:`DeliveryFailedError`."""

    #: Type and host, for humans; never a secret part of a URL.
    description: str
    #: What identifies the destination (a URL, say); hashed into the outbox key.
    identity: str
    #: Least time between two sends, for receivers that limit their rate.
    min_interval_s: float

    async def send(self, transition: Transition) -> None: ...


class NotifierType(Protocol):
    """The class an entry point of ``ftwatch.notifiers`` names."""

    config_model: ClassVar[type[NotifierConfig]]

    @classmethod
    def from_config(cls, config: Any, context: NotifierContext) -> Notifier: ...


def host_of(url: str) -> str:
    return httpx.URL(url).host or "?"


def check_response(response: httpx.Response) -> None:
    """Map a receiver's answer to success, a retry, or a permanent failure."""
    if response.is_success:
        return
    code = response.status_code
    answer = response.text[:200].replace("\n", " ").strip()
    detail = f"HTTP {code}" + (f": {answer}" if answer else "")
    if code in (408, 429) or code >= 500:
        raise DeliveryFailedError(detail, retry_after_s=parse_retry_after(response.headers.get("retry-after")))
    raise DeliveryFailedError(detail, permanent=True)


async def post_json(http: httpx.AsyncClient, url: str, content: bytes, headers: dict[str, str] | None = None) -> None:
    """POST a JSON body and judge the answer; network trouble is worth a retry."""
    try:
        response = await http.post(
            url, content=content, headers={"content-type": "application/json", **(headers or {})}
        )
    except httpx.HTTPError as exc:
        # The exception text of httpx can hold the URL, which may be a secret (Slack).
        raise DeliveryFailedError(f"{type(exc).__name__} talking to {host_of(url)}") from None
    check_response(response)
