"""Cohere's fine-tuning API v1, the first :class:`~ftwatch.sources.protocol.Source`."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import structlog
from pydantic import BaseModel, Field, field_validator

from ftwatch.model import Event, ModelInfo, ModelListing, parse_timestamp
from ftwatch.secrets import cohere_key
from ftwatch.sources.base import SourceConfig, SourceContext, SourceKind, SourceUnavailableError, http_url
from ftwatch.sources.fields import BadDataError, check_id, optional_str, parsed, path_of
from ftwatch.sources.http import ApiClient, ApiDialect, BearerKey
from ftwatch.sources.pages import Page, every_page, paginate, read_listing
from ftwatch.statuses import COHERE

if TYPE_CHECKING:
    from ftwatch.settings import CohereSettings

__all__ = ["CohereSource", "CohereSourceConfig"]

log = structlog.get_logger("ftwatch.sources.cohere")

_T = TypeVar("_T")

_API = "/v1/finetuning/finetuned-models"


def _model_path(model_id: str, tail: str = "") -> str:
    return path_of(_API, model_id, tail)


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
        raise BadDataError("a model without an id")
    check_id(raw["id"])
    return ModelInfo(
        id=raw["id"],
        name=optional_str(raw, "name"),
        # Zero values may be left out: a missing status is the zero one.
        status=optional_str(raw, "status") or "STATUS_UNSPECIFIED",
        updated_at=optional_str(raw, "updated_at"),
    )


def _event(raw: Any) -> Event:
    if not isinstance(raw, dict):
        raise BadDataError("an event that is not an object")
    return Event(
        status=optional_str(raw, "status") or "STATUS_UNSPECIFIED",
        created_at_ns=_timestamp(raw),
        user_id=optional_str(raw, "user_id"),
    )


class CohereSourceConfig(SourceConfig):
    """A ``[[sources]]`` table of type ``cohere`` (the ``[cohere]`` section's keys)."""

    #: Cohere's SDK's own ``CO_API_URL`` when the table names none.
    base_url: str = Field(
        default_factory=lambda: os.environ.get("CO_API_URL") or "https://api.cohere.com", validate_default=True
    )
    api_key_file: Path | None = None
    client_name: str = "ftwatch"

    _http_url = field_validator("base_url")(lambda cls, value: http_url(value))


class CohereSource:
    """Cohere's fine-tuning API v1 over one shared :class:`httpx.AsyncClient` (every
    request budgeted, retried and reported by :class:`~ftwatch.sources.http.ApiClient`)."""

    provider = "cohere"
    #: The list and the events say what happened, with times: no snapshot diffing.
    kind = SourceKind.HISTORY
    vocabulary = COHERE
    config_model: ClassVar[type[BaseModel]] = CohereSourceConfig

    def __init__(
        self, config: CohereSettings | CohereSourceConfig, deps: SourceContext, *, page_size: int = 1000
    ) -> None:
        key = deps.key or cohere_key(config.api_key_file, deps.environ)
        dialect = ApiDialect("Cohere", headers={"x-client-name": config.client_name})
        self._api = ApiClient(deps, BearerKey(key), dialect, base_url=config.base_url, retry=config)
        self._page_size = page_size
        self._max_pages = config.max_pages

    @classmethod
    def from_config(cls, config: CohereSettings | CohereSourceConfig, deps: SourceContext) -> CohereSource:
        """The source of the ``[cohere]`` section, as the registry builds it."""
        return cls(config, deps)

    async def _get(
        self, endpoint: str, path: str, params: dict[str, Any] | None = None, *, one_job: bool = False
    ) -> dict[str, Any]:
        return await self._api.get(endpoint, path, params, one_job=one_job)

    def _pages(
        self, endpoint: str, path: str, key: str, order_by: str, *, one_job: bool = False
    ) -> AsyncIterator[list[Any]]:
        async def fetch(token: str | None) -> Page:
            params: dict[str, Any] = {"page_size": self._page_size, "order_by": order_by}
            if token:
                params["page_token"] = token
            body = await self._get(endpoint, path, params, one_job=one_job)
            items = body.get(key) or []
            if not isinstance(items, list):
                raise SourceUnavailableError(f"{endpoint}: {key} is not a list")
            token = body.get("next_page_token")
            return items, token if isinstance(token, str) and token else None

        return paginate(endpoint, fetch, max_pages=self._max_pages, cursor_name="next_page_token")

    async def list_models(self) -> ModelListing:
        entries, pages = await every_page(self._pages("list_models", _API, "finetuned_models", "created_at"))
        # One unreadable model is that model's problem only.
        return read_listing(entries, _model_info, "id", pages)

    async def get_model(self, model_id: str) -> ModelInfo:
        body = await self._get("get_model", _model_path(model_id), one_job=True)
        return parsed(model_id, _model_info, body.get("finetuned_model"))

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        events: list[Event] = []
        # Newest first when there is a cursor: the pages past it need not be read.
        order = "created_at desc" if newer_than_ns is not None else "created_at"
        async for page in self._pages("list_events", _model_path(model_id, "/events"), "events", order, one_job=True):
            batch = [parsed(model_id, _event, item) for item in page]
            events.extend(batch)
            if newer_than_ns is not None and batch:
                stamps = [event.created_at_ns for event in batch]
                dated = [stamp for stamp in stamps if stamp is not None]
                descending = len(dated) == len(stamps) and all(a >= b for a, b in itertools.pairwise(dated))
                # Only trust the order if the page really is newest first.
                if descending and dated[-1] < newer_than_ns:
                    break
        return events
