"""One provider API over HTTP, as every source needs it: the budget, retries with
backoff and jitter (``Retry-After`` honoured, for the whole process), a refused key
read again for a short while, and each request reported.

What differs between providers is only how a request is authorized (a bearer key,
a SigV4 signature) and where an error body keeps its message: :class:`Credentials`
and ``message_of``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import httpx
import stamina
import structlog

from ftwatch.errors import AuthRefusedError, ConfigError, JobRefusedError
from ftwatch.ratelimit import RateLimiter
from ftwatch.retry_after import parse_retry_after
from ftwatch.secrets import SecretProvider
from ftwatch.sources.base import (
    ApiWait,
    ModelNotFoundError,
    RequestDone,
    RequestPolicy,
    SourceContext,
    SourceError,
    SourceUnavailableError,
)
from ftwatch.textsafe import one_line

__all__ = ["ApiClient", "ApiDialect", "BearerKey", "Credentials", "HeaderKey", "JobRefusedError", "json_message"]

log = structlog.get_logger("ftwatch.sources")


class Credentials(Protocol):
    """How requests to one API are authorized."""

    async def headers(self, method: str, url: httpx.URL, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` plus whatever authorizes this request."""
        ...

    async def reread(self) -> None:
        """Read the key (or the credential chain) again: it may have been rotated.
        :class:`~ftwatch.errors.ConfigError` while it is unreadable."""
        ...

    def describe(self) -> str:
        """Where the key comes from, for messages (never the key)."""
        ...


class BearerKey:
    """``Authorization: Bearer`` with a key from a :class:`SecretProvider`."""

    def __init__(self, key: SecretProvider) -> None:
        self._source = key
        self._key = key.read()

    async def headers(self, method: str, url: httpx.URL, headers: dict[str, str]) -> dict[str, str]:
        return headers | {"authorization": f"Bearer {self._key.get_secret_value()}"}

    async def reread(self) -> None:
        self._key = await anyio.to_thread.run_sync(self._source.read)

    def describe(self) -> str:
        return self._source.describe()


class HeaderKey(BearerKey):
    """A key sent in a header of its own (Azure's ``api-key``), not as a Bearer."""

    def __init__(self, key: SecretProvider, header: str) -> None:
        super().__init__(key)
        self._header = header

    async def headers(self, method: str, url: httpx.URL, headers: dict[str, str]) -> dict[str, str]:
        return headers | {self._header: self._key.get_secret_value()}


class _TransientError(Exception):
    """Worth another try: 429, 5xx, a malformed body, a broken connection."""

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def json_message(*paths: tuple[str, ...]) -> Callable[[httpx.Response], str]:
    """An error body's message, found at the first of ``paths`` that holds a string
    (``("message",)``, ``("error", "message")``); else the reason phrase."""

    def message_of(response: httpx.Response) -> str:
        try:
            body: Any = response.json()
        except ValueError:
            return response.reason_phrase or "no message"
        for path in paths:
            value = body
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str):
                # One line always: AWS appends its canonical request after a blank line.
                return one_line(value) or response.reason_phrase or "no message"
        return response.reason_phrase or "no message"

    return message_of


_MESSAGE = json_message(("message",))


@dataclass(frozen=True, slots=True)
class ApiDialect:
    """How one provider's API speaks, beyond JSON over HTTPS: its name in messages,
    where its error bodies keep the message, and the headers every request carries."""

    provider: str
    message_of: Callable[[httpx.Response], str] = _MESSAGE
    headers: Mapping[str, str] = field(default_factory=dict)


class ApiClient:
    """GET JSON objects from one API, with everything around it (see the module)."""

    def __init__(
        self, deps: SourceContext, credentials: Credentials, dialect: ApiDialect, *, base_url: str, retry: RequestPolicy
    ) -> None:
        self._http = deps.http
        self._base_url = base_url.rstrip("/")
        self.credentials = credentials
        self._provider = dialect.provider
        self._limiter: RateLimiter | None = deps.limiter
        self._retry = retry
        self._message_of = dialect.message_of
        self._headers = {"accept": "application/json", **dialect.headers}
        self._on_request = deps.on_request
        self._on_wait = deps.on_wait

    def _heed_rate_headers(self, response: httpx.Response, retry_after_s: float | None) -> None:
        """The whole process waits when the API says its window is used up: a 429's
        ``Retry-After``, or OpenAI's ``x-ratelimit-remaining-requests: 0``."""
        if self._limiter is None:
            return
        if retry_after_s is not None:
            self._limiter.pause(min(retry_after_s, self._retry.max_retry_after_s))
            return
        if response.headers.get("x-ratelimit-remaining-requests", "").strip() == "0":
            reset = _reset_seconds(response.headers.get("x-ratelimit-reset-requests", ""))
            if reset is not None:
                self._limiter.pause(min(reset, self._retry.max_retry_after_s))

    async def _get_once(self, endpoint: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        if self._limiter is not None:
            await self._limiter.acquire()
        request = self._http.build_request(
            "GET", self._base_url + path, params=params or None, timeout=self._retry.timeout_s
        )
        request.headers.update(await self.credentials.headers("GET", request.url, self._headers))
        started = time.perf_counter()
        try:
            response = await self._http.send(request)
            code = response.status_code
            body: Any = self._message_of(response) if code >= 400 else response.json()
        except httpx.HTTPError as exc:
            # Transport errors, and the others too (a gzip body that fails to decode):
            # each is one failed request, worth another try.
            self._on_request(RequestDone(endpoint, type(exc).__name__, time.perf_counter() - started))
            log.debug("api.request_failed", endpoint=endpoint, error=type(exc).__name__)
            raise _TransientError(f"{type(exc).__name__} talking to {_origin(request.url)}: {_reason(exc)}") from None
        except ValueError:  # not JSON, or not UTF-8
            self._on_request(RequestDone(endpoint, str(response.status_code), time.perf_counter() - started))
            raise _TransientError(f"malformed JSON body (HTTP {response.status_code})") from None
        self._on_request(RequestDone(endpoint, str(code), time.perf_counter() - started))
        retry_after = parse_retry_after(response.headers.get("retry-after")) if code == 429 else None
        self._heed_rate_headers(response, retry_after)
        if code == 429 or code >= 500:
            raise _TransientError(f"HTTP {code}: {body}", retry_after)
        return code, body

    async def get(
        self, endpoint: str, path: str, params: dict[str, Any] | None = None, *, one_job: bool = False
    ) -> dict[str, Any]:
        """The JSON object at ``path``. :class:`ModelNotFoundError` on 404,
        :class:`AuthRefusedError` when the key stays refused, :class:`SourceError`
        for another 4xx, :class:`SourceUnavailableError` when retries ran out.

        ``one_job``: the path is one job's (its detail, its events). A 403 there is a
        refusal of that job alone (an IAM deny on one resource, a job of another
        project), :class:`JobRefusedError`, never the key's: the list just worked
        with the same key. A 401 is the key's wherever it comes."""
        refused_since: float | None = None
        pause = 0.25
        while True:
            code, body = await self._get_with_retries(endpoint, path, params or {})
            if code == 403 and one_job:
                raise JobRefusedError(f"HTTP 403 for {endpoint}: {body}; the key may not read this job")
            if code in (401, 403):
                # A rotated key: a Secret still propagating, a file caught in the middle
                # of its rewrite. Read it again, for a short, bounded time.
                now = anyio.current_time()
                if refused_since is None:
                    refused_since = now
                    log.warning("api.key_refused", code=code, key_source=self.credentials.describe(), action="reread")
                elif now - refused_since >= self._retry.auth_retry_s:
                    raise AuthRefusedError(
                        f"the {self._provider} API refused the key (HTTP {code}: {body}) for "
                        f"{self._retry.auth_retry_s:g}s; check the key in {self.credentials.describe()}"
                    )
                await anyio.sleep(pause)
                pause = min(pause * 2, 2.0)
                await self._reread_key(refused_since)
                continue
            if code == 404:
                raise ModelNotFoundError(f"{path}: not found")
            if code >= 400:
                raise SourceError(f"HTTP {code} for {endpoint}: {body}")
            if not isinstance(body, dict):
                raise SourceUnavailableError(f"{endpoint}: body is not a JSON object")
            return body

    async def _reread_key(self, refused_since: float) -> None:
        """Read the key source again; while it is unreadable (empty, half written),
        keep trying until the refusal window closes."""
        while True:
            try:
                await self.credentials.reread()
            except ConfigError:
                if anyio.current_time() - refused_since >= self._retry.auth_retry_s:
                    raise
                await anyio.sleep(0.25)
            else:
                return

    def _retry_hook(self, endpoint: str) -> Callable[[BaseException], bool | float]:
        def hook(exc: BaseException) -> bool | float:
            if not isinstance(exc, _TransientError):
                return False
            if exc.retry_after_s is None:
                return True
            # The API said when. Wait that long, up to the cap: a long wait in one
            # request would stall the whole cycle, and is better spent by the next one.
            seconds = min(exc.retry_after_s, self._retry.max_retry_after_s)
            self._on_wait(ApiWait(endpoint, seconds, exc.retry_after_s))
            return seconds

        return hook

    async def _get_with_retries(self, endpoint: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        try:
            async for attempt in stamina.retry_context(
                on=self._retry_hook(endpoint),
                attempts=self._retry.max_attempts,
                timeout=None,
                wait_initial=self._retry.retry_initial_s,
                wait_max=self._retry.retry_max_s,
            ):
                with attempt:
                    return await self._get_once(endpoint, path, params)
        except _TransientError as exc:
            raise SourceUnavailableError(f"{endpoint}: {exc}") from None
        raise AssertionError("unreachable: stamina either returns or raises")


def _origin(url: httpx.URL) -> str:
    """Scheme, host and port of a URL: never its path, query or userinfo."""
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


def _reason(exc: BaseException) -> str:
    """Why a request failed, in plain words ("connection refused", "timed out")."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno).lower()  # "connection refused", whatever wraps it
        seen = seen.__cause__ or seen.__context__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc)).strip()
    return one_line(text).lower() if text else "no answer"


def _reset_seconds(text: str) -> float | None:
    """OpenAI's reset durations: ``1s``, ``6m0s``, ``120ms``, ``1h2m3.5s``."""
    text = text.strip()
    if not text:
        return None
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    index = 0
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if text.startswith("ms", index) else char
        if unit not in units or not number:
            return None
        try:
            total += float(number) * units[unit]
        except ValueError:
            return None
        number = ""
        index += len(unit)
    return None if number else total
