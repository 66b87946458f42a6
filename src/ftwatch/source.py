"""Where events come from: the :class:`Source` protocol and Cohere's fine-tuning API.

Another provider needs only another class with the three methods of :class:`Source`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import httpx
import stamina
import structlog

from ftwatch.errors import AuthRefusedError
from ftwatch.model import Event, ModelInfo, ModelListing, parse_timestamp
from ftwatch.ratelimit import RateLimiter
from ftwatch.retry_after import parse_retry_after
from ftwatch.settings import KeySource

__all__ = [
    "CohereSource",
    "ModelNotFoundError",
    "RequestObserver",
    "Source",
    "SourceError",
    "SourceUnavailableError",
]

log = structlog.get_logger("ftwatch.source")

_T = TypeVar("_T")

_API = "/v1/finetuning/finetuned-models"


class SourceError(Exception):
    """The API answered, but not with what was asked (a 400, say)."""


class SourceUnavailableError(SourceError):
    """The API could not be reached or kept failing after every retry."""


class ModelNotFoundError(SourceError):
    """404 for one model: it was deleted or the id is wrong."""


class _TransientError(Exception):
    """Worth another try: 429, 5xx, a malformed body."""

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Source(Protocol):
    """What the poller needs of a fine-tuning provider."""

    async def list_models(self) -> ModelListing:
        """Every fine-tuned model visible to the key."""
        ...

    async def get_model(self, model_id: str) -> ModelInfo: ...

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        """The model's events; with ``newer_than_ns`` at least those at or after it."""
        ...


#: Called after every HTTP exchange with (endpoint, status code or error name, seconds).
RequestObserver = Callable[[str, str, float], None]


def _no_observer(endpoint: str, code: str, seconds: float) -> None:
    pass


def _timestamp(raw: Any, field: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise _TransientError(f"malformed {field}: not a string")
    try:
        return parse_timestamp(raw)
    except ValueError:
        raise _TransientError(f"malformed {field}: {raw[:40]!r}") from None


def _model_info(raw: Any) -> ModelInfo:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise _TransientError("malformed model: no id")
    return ModelInfo(
        id=raw["id"],
        name=raw.get("name") or None,
        # Zero values may be left out: a missing status is the zero one.
        status=str(raw.get("status") or "STATUS_UNSPECIFIED"),
        updated_at=raw["updated_at"] if isinstance(raw.get("updated_at"), str) else None,
    )


def _event(raw: Any) -> Event:
    if not isinstance(raw, dict):
        raise _TransientError("malformed event: not an object")
    return Event(
        status=str(raw.get("status") or "STATUS_UNSPECIFIED"),
        created_at_ns=_timestamp(raw.get("created_at"), "created_at") or 0,
        user_id=raw.get("user_id") or None,
    )


def _retry_hook(exc: Exception) -> bool | float:
    if isinstance(exc, _TransientError):
        return exc.retry_after_s if exc.retry_after_s is not None else True
    return isinstance(exc, httpx.TransportError)


class CohereSource:
    """Cohere's fine-tuning API v1 over one shared :class:`httpx.AsyncClient`.

    Every request goes through the process-wide rate limiter, is retried with
    exponential backoff and jitter (``Retry-After`` honoured), and on 401/403 the key
    is read again once before giving up with :class:`AuthRefusedError`.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        key_source: KeySource,
        client_name: str = "ftwatch",
        limiter: RateLimiter | None = None,
        max_attempts: int = 5,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        observer: RequestObserver = _no_observer,
        page_size: int = 1000,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._key_source = key_source
        self._key = key_source.read()
        self._client_name = client_name
        self._limiter = limiter
        self._max_attempts = max_attempts
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._observer = observer
        self._page_size = page_size

    async def _get_once(self, endpoint: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        if self._limiter is not None:
            await self._limiter.acquire()
        headers = {
            "authorization": f"Bearer {self._key.get_secret_value()}",
            "x-client-name": self._client_name,
            "accept": "application/json",
        }
        started = time.perf_counter()
        try:
            response = await self._http.get(self._base_url + path, params=params, headers=headers)
        except httpx.TransportError as exc:
            self._observer(endpoint, type(exc).__name__, time.perf_counter() - started)
            log.debug("api.request_failed", endpoint=endpoint, error=type(exc).__name__)
            raise
        self._observer(endpoint, str(response.status_code), time.perf_counter() - started)
        code = response.status_code
        if code == 429 or code >= 500:
            raise _TransientError(
                f"HTTP {code}: {_message(response)}", parse_retry_after(response.headers.get("retry-after"))
            )
        if code in (401, 403, 404) or code >= 400:
            return code, _message(response)
        try:
            return code, response.json()
        except ValueError:
            raise _TransientError(f"malformed JSON body (HTTP {code})") from None

    async def _get(self, endpoint: str, path: str, params: dict[str, Any] | None = None) -> Any:
        reread = False
        while True:
            code, body = await self._get_with_retries(endpoint, path, params or {})
            if code in (401, 403) and not reread:
                # A rotated key (a new Secret file, a new credential): read it again once.
                log.warning("api.key_refused", code=code, key_source=self._key_source.describe(), action="reread")
                self._key = self._key_source.read()
                reread = True
                continue
            if code in (401, 403):
                raise AuthRefusedError(
                    f"the Cohere API refused the key (HTTP {code}: {body}); "
                    f"check the key in {self._key_source.describe()}"
                )
            if code == 404:
                raise ModelNotFoundError(f"{path}: not found")
            if code >= 400:
                raise SourceError(f"HTTP {code} for {endpoint}: {body}")
            if not isinstance(body, dict):
                raise SourceUnavailableError(f"{endpoint}: body is not a JSON object")
            return body

    async def _get_with_retries(self, endpoint: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        try:
            async for attempt in stamina.retry_context(
                on=_retry_hook,
                attempts=self._max_attempts,
                timeout=None,
                wait_initial=self._retry_initial_s,
                wait_max=self._retry_max_s,
            ):
                with attempt:
                    return await self._get_once(endpoint, path, params)
        except _TransientError as exc:
            raise SourceUnavailableError(f"{endpoint}: {exc}") from None
        except httpx.TransportError as exc:
            raise SourceUnavailableError(f"{endpoint}: {type(exc).__name__} talking to the API") from None
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _pages(self, endpoint: str, path: str, key: str, order_by: str) -> Any:
        token = ""
        seen_tokens: set[str] = set()
        while True:
            params: dict[str, Any] = {"page_size": self._page_size, "order_by": order_by}
            if token:
                params["page_token"] = token
            body = await self._get(endpoint, path, params)
            items = body.get(key) or []
            if not isinstance(items, list):
                raise SourceUnavailableError(f"{endpoint}: {key} is not a list")
            yield items
            token = body.get("next_page_token") or ""
            if not token:
                return
            if token in seen_tokens:
                raise SourceUnavailableError(f"{endpoint}: the API repeated a page token")
            seen_tokens.add(token)

    async def list_models(self) -> ModelListing:
        models: list[ModelInfo] = []
        pages = 0
        async for page in self._pages("list_models", _API, "finetuned_models", "created_at"):
            models.extend(self._parsed(_model_info, item) for item in page)
            pages += 1
        return ModelListing(models, pages)

    async def get_model(self, model_id: str) -> ModelInfo:
        body = await self._get("get_model", f"{_API}/{model_id}")
        return self._parsed(_model_info, body.get("finetuned_model"))

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        events: list[Event] = []
        # Newest first when there is a cursor: the pages past it need not be read.
        order = "created_at desc" if newer_than_ns is not None else "created_at"
        async for page in self._pages("list_events", f"{_API}/{model_id}/events", "events", order):
            batch = [self._parsed(_event, item) for item in page]
            events.extend(batch)
            if newer_than_ns is not None and batch:
                stamps = [event.created_at_ns for event in batch]
                descending = all(a >= b for a, b in itertools.pairwise(stamps))
                # Only trust the order if the page really is newest first.
                if descending and stamps[-1] < newer_than_ns:
                    break
        return events

    @staticmethod
    def _parsed(parse: Callable[[Any], _T], raw: Any) -> _T:
        try:
            return parse(raw)
        except _TransientError as exc:
            raise SourceUnavailableError(str(exc)) from None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return response.reason_phrase or "no message"
