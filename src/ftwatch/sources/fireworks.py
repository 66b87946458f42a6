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
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ftwatch.errors import ConfigError
from ftwatch.model import ModelInfo, ModelListing, Progress
from ftwatch.secrets import FIREWORKS_KEY, api_key
from ftwatch.sources.base import FromConfig, SourceConfig, SourceContext, http_url
from ftwatch.sources.fields import NoHistory, optional_number, parsed, path_of, resource_job
from ftwatch.sources.http import ApiClient, ApiDialect, BearerKey, json_message
from ftwatch.sources.pages import read_listing, token_listing
from ftwatch.statuses import FIREWORKS

__all__ = ["FireworksSource", "FireworksSourceConfig"]

_PAGE = 200
#: Google-style ``{"error": {"code", "message", "status"}}``, or a bare ``message``.
_DIALECT = ApiDialect("Fireworks", json_message(("error", "message"), ("message",)))


class FireworksSourceConfig(SourceConfig):
    """A ``[[sources]]`` table of type ``fireworks``."""

    #: The account id of the jobs' path; else ``FIREWORKS_ACCOUNT_ID``.
    account: str | None = Field(default_factory=lambda: os.environ.get("FIREWORKS_ACCOUNT_ID") or None)
    base_url: str = "https://api.fireworks.ai"
    #: Else ``FIREWORKS_API_KEY``, else the systemd credential ``fireworks-api-key``.
    api_key_file: Path | None = None

    _http_url = field_validator("base_url")(lambda cls, value: http_url(value))


def _job(raw: Any) -> ModelInfo:
    info = resource_job(
        raw,
        FIREWORKS,
        display="displayName",
        reason=("status", "message"),
        ended_at="completedTime",
        produced=("outputModel",),
    )
    # Fireworks tells a percent, nothing else: no steps, no losses, no ETA.
    percent = optional_number(raw.get("jobProgress"), "percent")
    if percent is None:
        return info
    return replace(info, progress=Progress(percent=min(percent, 100.0)))


class FireworksSource(
    NoHistory, FromConfig, provider="fireworks", vocabulary=FIREWORKS, config_model=FireworksSourceConfig
):
    """An account's supervised fine-tuning jobs, through one :class:`ApiClient`."""

    def __init__(self, config: FireworksSourceConfig, deps: SourceContext) -> None:
        where = config.where
        if not config.account:
            raise ConfigError(f"no Fireworks account for {where}: set account in the table, or FIREWORKS_ACCOUNT_ID")
        key = api_key(FIREWORKS_KEY, config.api_key_file, deps.environ, where=where, file_label=f"{where} api_key_file")
        self._api = ApiClient(deps, BearerKey(key), _DIALECT, base_url=config.base_url, retry=config)
        self._jobs = path_of("/v1/accounts", config.account, "/supervisedFineTuningJobs")
        self._max_pages = config.max_pages

    async def list_models(self) -> ModelListing:
        entries, pages = await token_listing(
            self._api.get,
            "list_jobs",
            self._jobs,
            "supervisedFineTuningJobs",
            page_size=_PAGE,
            max_pages=self._max_pages,
        )
        return read_listing(entries, _job, "name", pages)

    async def get_model(self, model_id: str) -> ModelInfo:
        body = await self._api.get("get_job", path_of(self._jobs, model_id), one_job=True)
        return parsed(model_id, _job, body, "job")
