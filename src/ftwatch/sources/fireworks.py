"""Fireworks supervised fine-tuning jobs: a snapshot source.

``GET /v1/accounts/{account}/supervisedFineTuningJobs`` pages by ``pageToken``
(``nextPageToken``; an empty list may be ``{}``), a job is read by its id (the last
segment of its ``name``), statuses are ``JOB_STATE_*`` words
(:data:`~ftwatch.statuses.FIREWORKS`), a failure's reason is ``status.message`` (its
``code`` a gRPC code *name*), times are RFC 3339. Fireworks keeps no event history and
pushes nothing: each poll sees the job as it is now.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from ftwatch.errors import BadDataError, ConfigError
from ftwatch.model import Event, ModelInfo, ModelListing, format_timestamp, parse_timestamp
from ftwatch.secrets import FIREWORKS_KEY, api_key
from ftwatch.sources.base import SourceConfig, SourceContext, SourceKind, SourceUnavailableError, http_url
from ftwatch.sources.fields import check_id, optional_str, parsed, path_of
from ftwatch.sources.http import ApiClient, ApiDialect, BearerKey, json_message
from ftwatch.sources.pages import Page, paginate, read_listing
from ftwatch.statuses import FIREWORKS
from ftwatch.textsafe import FAILURE_MAX

__all__ = ["FireworksSource", "FireworksSourceConfig"]

_PAGE = 200
#: Google-style ``{"error": {"code", "message", "status"}}``, or a bare ``message``.
_DIALECT = ApiDialect("Fireworks", json_message(("error", "message"), ("message",)))
#: States a job is over in: its ``completedTime`` is when it got there.
_ENDED = frozenset(word for word in FIREWORKS.states if FIREWORKS.is_terminal(word))


class FireworksSourceConfig(SourceConfig):
    """A ``[[sources]]`` table of type ``fireworks``."""

    #: The account id of the jobs' path; else ``FIREWORKS_ACCOUNT_ID``.
    account: str | None = Field(default_factory=lambda: os.environ.get("FIREWORKS_ACCOUNT_ID") or None)
    base_url: str = "https://api.fireworks.ai"
    #: Else ``FIREWORKS_API_KEY``, else the systemd credential ``fireworks-api-key``.
    api_key_file: Path | None = None

    _http_url = field_validator("base_url")(lambda cls, value: http_url(value))


def _time(raw: dict[str, Any], field: str) -> str | None:
    """An RFC 3339 field as the API wrote it, if it reads as one (else none: the
    moment ftwatch noticed stands in for it)."""
    value = optional_str(raw, field)
    if value is None:
        return None
    try:
        return format_timestamp(parse_timestamp(value))
    except ValueError:
        return None


def _job(raw: Any) -> ModelInfo:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise BadDataError("a job without name")
    job_id = check_id(raw["name"].rpartition("/")[2])
    state = optional_str(raw, "state")
    if state is None:
        raise BadDataError("a job without a state")
    status = raw.get("status")
    message = optional_str(status, "message") if isinstance(status, dict) else None
    ended = state in _ENDED
    return ModelInfo(
        id=job_id,
        name=optional_str(raw, "displayName"),
        status=state,
        updated_at=(_time(raw, "completedTime") if ended else None) or _time(raw, "updateTime"),
        fine_tuned_model=optional_str(raw, "outputModel") if FIREWORKS.state_of(state) == "ready" else None,
        failure=message[:FAILURE_MAX] if message and FIREWORKS.state_of(state) == "failed" else None,
    )


class FireworksSource:
    """An account's supervised fine-tuning jobs, through one :class:`ApiClient`."""

    provider = "fireworks"
    kind = SourceKind.SNAPSHOT
    vocabulary = FIREWORKS
    config_model: ClassVar[type[BaseModel]] = FireworksSourceConfig

    def __init__(self, config: FireworksSourceConfig, deps: SourceContext) -> None:
        where = f"[[sources]] {config.name or config.type}"
        if not config.account:
            raise ConfigError(f"no Fireworks account for {where}: set account in the table, or FIREWORKS_ACCOUNT_ID")
        key = api_key(FIREWORKS_KEY, config.api_key_file, deps.environ, where=where, file_label=f"{where} api_key_file")
        self._api = ApiClient(deps, BearerKey(key), _DIALECT, base_url=config.base_url, retry=config)
        self._jobs = path_of("/v1/accounts", config.account, "/supervisedFineTuningJobs")
        self._max_pages = config.max_pages

    @classmethod
    def from_config(cls, config: FireworksSourceConfig, deps: SourceContext) -> FireworksSource:
        return cls(config, deps)

    async def list_models(self) -> ModelListing:
        endpoint = "list_jobs"

        async def fetch(token: str | None) -> Page:
            params: dict[str, Any] = {"pageSize": _PAGE}
            if token:
                params["pageToken"] = token
            body = await self._api.get(endpoint, self._jobs, params)
            items = body.get("supervisedFineTuningJobs", [])  # an empty list is {}
            if not isinstance(items, list):
                raise SourceUnavailableError(f"{endpoint}: supervisedFineTuningJobs is not a list")
            token = body.get("nextPageToken")
            return items, token if isinstance(token, str) and token else None

        entries: list[Any] = []
        pages = 0
        async for page in paginate(endpoint, fetch, max_pages=self._max_pages, cursor_name="nextPageToken"):
            entries.extend(page)
            pages += 1
        return read_listing(entries, _job, "name", pages)

    async def get_model(self, model_id: str) -> ModelInfo:
        body = await self._api.get("get_job", path_of(self._jobs, model_id), one_job=True)
        return parsed(model_id, _job, body, "job")

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        """No history: the job as it is now, with its failure's reason."""
        info = await self.get_model(model_id)
        return [Event(info.status, info.updated_at_ns, message=info.failure)]
