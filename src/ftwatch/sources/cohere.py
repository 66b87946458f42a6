"""Cohere's fine-tuning API v1, the first :class:`~ftwatch.sources.base.Source`."""

from __future__ import annotations

import itertools
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx
import stamina
import structlog

from ftwatch import model
from ftwatch.errors import AuthRefusedError, ConfigError
from ftwatch.model import Event, ModelInfo, ModelListing, parse_timestamp
from ftwatch.ratelimit import RateLimiter
from ftwatch.retry_after import parse_retry_after
from ftwatch.secrets import SecretProvider
from ftwatch.sources.base import (
    ApiWait,
    InvalidModelIdError,
    ModelDataError,
    ModelNotFoundError,
    RequestDone,
    SourceDeps,
    SourceError,
    SourceUnavailableError,
)

if TYPE_CHECKING:
    from ftwatch.settings import CohereSettings

__all__ = ["CohereSource", "check_model_id"]

log = structlog.get_logger("ftwatch.sources.cohere")

_T = TypeVar("_T")

_API = "/v1/finetuning/finetuned-models"


def check_model_id(model_id: str) -> str:
    """The id as it is, or :class:`InvalidModelIdError` if it could reach another path."""
    try:
        return model.check_model_id(model_id)
    except ValueError as exc:
        raise InvalidModelIdError(f"{exc}; check it with 'ftwatch models'") from None


def _model_path(model_id: str, tail: str = "") -> str:
    # Escaped as one segment: an id can never climb to another path of the API host,
    # which would receive the bearer key.
    return f"{_API}/{urllib.parse.quote(check_model_id(model_id), safe='')}{tail}"


class _TransientError(Exception):
    """Worth another try: 429, 5xx, a malformed body."""

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def _ignore(_: object) -> None:
    pass


class _BadDataError(Exception):
    """One item of a body is unreadable."""


def _optional_str(raw: dict[str, Any], field: str) -> str | None:
    value = raw.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _BadDataError(f"{field} is a {type(value).__name__}, not a string")
    return value


def _timestamp(raw: dict[str, Any]) -> int | None:
    """``created_at`` in nanoseconds; ``None`` when absent, empty or unreadable: such
    an event is still reported (as undated), never dropped."""
    value = raw.get("created_at")
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _model_info(raw: Any) -> ModelInfo:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise _BadDataError("a model without an id")
    check_model_id(raw["id"])
    return ModelInfo(
        id=raw["id"],
        name=_optional_str(raw, "name"),
        # Zero values may be left out: a missing status is the zero one.
        status=_optional_str(raw, "status") or "STATUS_UNSPECIFIED",
        updated_at=_optional_str(raw, "updated_at"),
    )


def _event(raw: Any) -> Event:
    if not isinstance(raw, dict):
        raise _BadDataError("an event that is not an object")
    return Event(
        status=_optional_str(raw, "status") or "STATUS_UNSPECIFIED",
        created_at_ns=_timestamp(raw),
        user_id=_optional_str(raw, "user_id"),
    )


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
        key: SecretProvider,
        client_name: str = "ftwatch",
        limiter: RateLimiter | None = None,
        max_attempts: int = 5,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        on_request: Callable[[RequestDone], None] = _ignore,
        on_wait: Callable[[ApiWait], None] = _ignore,
        page_size: int = 1000,
        max_retry_after_s: float = 60.0,
        auth_retry_s: float = 10.0,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._key_source = key
        self._key = key.read()
        self._client_name = client_name
        self._limiter = limiter
        self._max_attempts = max_attempts
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._on_request = on_request
        self._on_wait = on_wait
        self._page_size = page_size
        self._max_retry_after_s = max_retry_after_s
        self._auth_retry_s = auth_retry_s

    @classmethod
    def from_config(cls, config: CohereSettings, deps: SourceDeps) -> CohereSource:
        """The source of the ``[cohere]`` section, as the registry builds it."""
        return cls(
            deps.http,
            base_url=config.base_url,
            key=deps.key,
            client_name=config.client_name,
            limiter=deps.limiter,
            max_attempts=config.max_attempts,
            retry_initial_s=config.retry_initial_s,
            retry_max_s=config.retry_max_s,
            on_request=deps.on_request,
            on_wait=deps.on_wait,
            max_retry_after_s=config.max_retry_after_s,
            auth_retry_s=config.auth_retry_s,
        )

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
            code = response.status_code
            body: Any = _message(response) if code >= 400 else response.json()
        except httpx.HTTPError as exc:
            # Transport errors, and the others too (a gzip body that fails to decode):
            # each is one failed request, worth another try.
            self._on_request(RequestDone(endpoint, type(exc).__name__, time.perf_counter() - started))
            log.debug("api.request_failed", endpoint=endpoint, error=type(exc).__name__)
            raise _TransientError(f"{type(exc).__name__} talking to the API") from None
        except ValueError:  # not JSON, or not UTF-8
            self._on_request(RequestDone(endpoint, str(response.status_code), time.perf_counter() - started))
            raise _TransientError(f"malformed JSON body (HTTP {response.status_code})") from None
        self._on_request(RequestDone(endpoint, str(code), time.perf_counter() - started))
        if code == 429 or code >= 500:
            raise _TransientError(f"HTTP {code}: {body}", parse_retry_after(response.headers.get("retry-after")))
        return code, body

    async def _get(self, endpoint: str, path: str, params: dict[str, Any] | None = None) -> Any:
        refused_since: float | None = None
        pause = 0.25
        while True:
            code, body = await self._get_with_retries(endpoint, path, params or {})
            if code in (401, 403):
                # A rotated key: a Secret still propagating, a file caught in the middle
                # of its rewrite. Read it again, for a short, bounded time.
                now = anyio.current_time()
                if refused_since is None:
                    refused_since = now
                    log.warning("api.key_refused", code=code, key_source=self._key_source.describe(), action="reread")
                elif now - refused_since >= self._auth_retry_s:
                    raise AuthRefusedError(
                        f"the Cohere API refused the key (HTTP {code}: {body}) for {self._auth_retry_s:g}s; "
                        f"check the key in {self._key_source.describe()}"
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
                self._key = await anyio.to_thread.run_sync(self._key_source.read)
            except ConfigError:
                if anyio.current_time() - refused_since >= self._auth_retry_s:
                    raise
                await anyio.sleep(0.25)
            else:
                return

    def _retry_hook(self, endpoint: str) -> Callable[[Exception], bool | float]:
        def hook(exc: Exception) -> bool | float:
            if not isinstance(exc, _TransientError):
                return False
            if exc.retry_after_s is None:
                return True
            # The API said when. Wait that long, up to the cap: a long wait in one
            # request would stall the whole cycle, and is better spent by the next one.
            seconds = min(exc.retry_after_s, self._max_retry_after_s)
            self._on_wait(ApiWait(endpoint, seconds, exc.retry_after_s))
            return seconds

        return hook

    async def _get_with_retries(self, endpoint: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        try:
            async for attempt in stamina.retry_context(
                on=self._retry_hook(endpoint),
                attempts=self._max_attempts,
                timeout=None,
                wait_initial=self._retry_initial_s,
                wait_max=self._retry_max_s,
            ):
                with attempt:
                    return await self._get_once(endpoint, path, params)
        except _TransientError as exc:
            raise SourceUnavailableError(f"{endpoint}: {exc}") from None
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
        rejected: dict[str, str] = {}
        pages = 0
        async for page in self._pages("list_models", _API, "finetuned_models", "created_at"):
            for item in page:
                try:
                    models.append(_model_info(item))
                except (_BadDataError, InvalidModelIdError) as exc:
                    # One unreadable model is that model's problem only.
                    raw_id = item.get("id") if isinstance(item, dict) else None
                    rejected[raw_id[:80] if isinstance(raw_id, str) else "?"] = str(exc)
            pages += 1
        return ModelListing(models, pages, rejected)

    async def get_model(self, model_id: str) -> ModelInfo:
        body = await self._get("get_model", _model_path(model_id))
        return _parsed(model_id, _model_info, body.get("finetuned_model"))

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        events: list[Event] = []
        # Newest first when there is a cursor: the pages past it need not be read.
        order = "created_at desc" if newer_than_ns is not None else "created_at"
        async for page in self._pages("list_events", _model_path(model_id, "/events"), "events", order):
            batch = [_parsed(model_id, _event, item) for item in page]
            events.extend(batch)
            if newer_than_ns is not None and batch:
                stamps = [event.created_at_ns for event in batch]
                dated = [stamp for stamp in stamps if stamp is not None]
                descending = len(dated) == len(stamps) and all(a >= b for a, b in itertools.pairwise(dated))
                # Only trust the order if the page really is newest first.
                if descending and dated[-1] < newer_than_ns:
                    break
        return events


def _parsed(model_id: str, parse: Callable[[Any], _T], raw: Any) -> _T:
    try:
        return parse(raw)
    except (_BadDataError, InvalidModelIdError) as exc:
        raise ModelDataError(f"model {model_id[:80]}: {exc}") from None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return response.reason_phrase or "no message"
