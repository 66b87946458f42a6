"""What a notifier is: the protocol every built-in and plug-in notifier follows.

A notifier type is a class registered in the entry-point group ``ftwatch.notifiers``
under its ``type`` name. It has a pydantic ``config_model`` (a subclass of
:class:`NotifierConfig`) and a ``from_config(config, context)`` class method that
returns a :class:`Notifier`. Notifiers know only :mod:`ftwatch.model`: the outbox,
the retries and the pacing are the dispatcher's business.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ftwatch.errors import DeliveryFailedError
from ftwatch.model import Transition
from ftwatch.retry_after import parse_retry_after
from ftwatch.secrets import FileSecret
from ftwatch.statuses import filter_word

if TYPE_CHECKING:
    from ftwatch.templates import Template

__all__ = [
    "DeliveryFailedError",
    "Notifier",
    "NotifierConfig",
    "NotifierContext",
    "NotifierType",
    "TemplatedConfig",
    "UrlNotifier",
    "check_header_name",
    "check_header_value",
    "check_http_url",
    "check_response",
    "compiled",
    "host_of",
    "post_json",
    "resolve_url",
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
            word = filter_word(name)
            if word is None:
                raise ValueError(
                    f"{name!r} is no known status or state (use e.g. READY, FAILED, PAUSED, DELETED, running, "
                    "or a provider's own word: succeeded, Completed)"
                )
            normalized.append(word)
        return normalized


class TemplatedConfig(NotifierConfig):
    """A notifier whose message text a ``template`` may word (sandboxed Jinja2).

    Compiled (and tried on a sample) once, when the configuration is validated."""

    template: str | None = None

    @field_validator("template")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from ftwatch.templates import TemplateText  # noqa: PLC0415 - Jinja2 only for templates

        return TemplateText.of(value)

    def compiled_template(self) -> Template | None:
        return compiled(self.template) if self.template is not None else None


def compiled(text: str) -> Template:
    """The compiled form a validated template field carries."""
    compiled: Template | None = getattr(text, "compiled", None)
    if compiled is None:  # a config built without validation: compile it now
        from ftwatch.templates import compile_template  # noqa: PLC0415

        compiled = compile_template(text)
    return compiled


def _read_secret_file(path: Path, what: str) -> SecretStr:
    return FileSecret(path, what).read()


@dataclass(frozen=True, slots=True)
class NotifierContext:
    """What the application lends every notifier: an HTTP client, stdout, and the way
    to read a secret file (``url_file``, ``secret_file``) when the notifier is built."""

    http: httpx.AsyncClient
    stdout: IO[str]
    read_secret: Callable[[Path, str], SecretStr] = field(default=_read_secret_file)


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
    try:
        return httpx.URL(url).host or "?"
    except httpx.InvalidURL:
        return "?"


class UrlNotifier:
    """The part of a notifier that POSTs to one URL: the URL is a secret (it often
    carries a token), so it is the notifier's identity but only its host is shown."""

    #: The type's name in its description (``slack hooks.slack.com``).
    kind: ClassVar[str]

    def __init__(self, url: str, context: NotifierContext) -> None:
        self._url = url
        self._http = context.http
        self.identity = url
        self.description = f"{self.kind} {host_of(url)}"


#: RFC 9110 field names: a token.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def check_header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"header name {name[:40]!r} is not a valid HTTP field name (letters, digits, - and _)")
    return name


def check_header_value(value: str, name: str) -> str:
    """A header value HTTP/1.1 can carry: printable ASCII (and tabs), no line breaks."""
    if not value.isascii() or any(c in value for c in "\r\n\0"):
        raise ValueError(f"header {name!r} would carry non-ASCII or line-break characters, which HTTP cannot send")
    return value


def check_http_url(url: str, key: str = "") -> str:
    """``url`` if it is an absolute http(s) URL, else :class:`ValueError` (its text
    after ``key``, the config key, when one is named)."""
    named = f"{key} " if key else ""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise ValueError(f"{named}is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{named}must be an http:// or https:// URL with a host")
    return url


def resolve_url(inline: SecretStr | None, path: Path | None, context: NotifierContext, field: str) -> str:
    """The URL a notifier posts to: given inline (checked at validation), or read from
    its ``*_file`` now and checked here; the message names the field."""
    if path is None:
        assert inline is not None  # the config's validator made sure one is given
        return inline.get_secret_value()
    url = context.read_secret(path, f"the URL in {field}").get_secret_value()
    try:
        return check_http_url(url)
    except ValueError as exc:
        raise ValueError(f"{field} {exc}") from None


def check_response(response: httpx.Response) -> None:
    """Map a receiver's answer to success, a retry, or a permanent failure."""
    if response.is_success:
        return
    code = response.status_code
    if 300 <= code < 400:
        # Not followed: a redirect of a signed POST to wherever a receiver says could
        # hand the body (or a URL's token) to another host, and 301/302 turn it into
        # a GET. The fix is the URL in the configuration; say where it points now,
        # host only (a path can hold a token).
        location = response.headers.get("location", "")
        target = f"{httpx.URL(location).scheme}://{host_of(location)}" if "://" in location else "a relative path"
        raise DeliveryFailedError(
            f"HTTP {code}: the receiver redirects to {target}; ftwatch does not follow redirects, fix the URL",
            permanent=True,
        )
    answer = response.text[:200].replace("\n", " ").strip()
    detail = f"HTTP {code}" + (f": {answer}" if answer else "")
    if code in (408, 429) or code >= 500:
        raise DeliveryFailedError(detail, retry_after_s=parse_retry_after(response.headers.get("retry-after")))
    raise DeliveryFailedError(detail, permanent=True)


#: httpx errors that no retry can fix: the request itself cannot be sent.
_UNSENDABLE = (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError)


async def post_json(http: httpx.AsyncClient, url: str, content: bytes, headers: dict[str, str] | None = None) -> None:
    """POST a JSON body and judge the answer; network trouble is worth a retry, a
    request that cannot be sent at all is not."""
    try:
        response = await http.post(
            url, content=content, headers={"content-type": "application/json", **(headers or {})}
        )
    except _UNSENDABLE as exc:
        detail = f"{type(exc).__name__}: the request to {host_of(url)} cannot be sent"
        raise DeliveryFailedError(detail, permanent=True) from None
    except httpx.HTTPError as exc:
        # The exception text of httpx can hold the URL, which may be a secret (Slack).
        raise DeliveryFailedError(f"{type(exc).__name__} talking to {host_of(url)}") from None
    except (UnicodeError, ValueError) as exc:
        # A header value that HTTP cannot carry (httpx refuses to encode it).
        raise DeliveryFailedError(f"the request cannot be sent: {type(exc).__name__}", permanent=True) from None
    check_response(response)
