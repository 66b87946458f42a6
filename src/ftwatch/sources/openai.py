"""OpenAI's fine-tuning jobs (``/v1/fine_tuning/jobs``), a snapshot source.

The job list (newest first, cursor ``after`` = a job id, ``has_more``) gives every
job's status now; a job's events (newest first, ``after`` = an event id) are
messages, some of which tell when it moved ("Fine-tuning job started"): they give
the steps between two polls, with their times (see :mod:`ftwatch.snapshot`). On
``succeeded`` the transition carries ``fine_tuned_model``; on ``failed``, the
job's ``error.message``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ftwatch.errors import ConfigError
from ftwatch.model import Event, ModelInfo, ModelListing, Progress, format_timestamp
from ftwatch.secrets import FileSecret, inline_or_file, openai_key
from ftwatch.sources.base import FromConfig, SourceConfig, SourceContext, SourceKind, SourceUnavailableError, http_url
from ftwatch.sources.fields import (
    BadDataError,
    id_and_status,
    optional_count,
    optional_number,
    optional_str,
    parsed,
    path_of,
)
from ftwatch.sources.http import ApiClient, ApiDialect, BearerKey, json_message
from ftwatch.sources.pages import Page, every_page, paginate, read_listing
from ftwatch.standard_webhooks import secret_key
from ftwatch.statuses import OPENAI
from ftwatch.textsafe import FAILURE_MAX

#: OpenAI nests its error text under "error" (a proxy before it may not).
_ERROR_MESSAGE = json_message(("error", "message"), ("message",))


__all__ = [
    "JobsApi",
    "OpenAIShaped",
    "OpenAISource",
    "OpenAISourceConfig",
    "PushConfig",
    "metrics_progress",
    "status_of_message",
]

_JOBS = "/v1/fine_tuning/jobs"
_PAGE = 100  # the most the API gives per page
#: A running job's newest events, for its metrics: most of a job's events are
#: metrics, so the newest few hold one.
_PROGRESS_PAGE = 10


def _default_base_url() -> str:
    return os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com"


class PushConfig(BaseModel):
    """``[sources.webhook]``: OpenAI's signed webhooks, received by the daemon."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The endpoint's signing secret (``whsec_…``), or a file that holds it.
    secret: SecretStr | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> PushConfig:
        if (secret := inline_or_file("secret", self.secret, self.secret_file)) is not None:
            secret_key(secret)
        return self

    def read_secret(self) -> str:
        """The secret (reading its file: blocking); :class:`ConfigError` if unusable."""
        if self.secret is not None:
            return self.secret.get_secret_value()
        assert self.secret_file is not None
        value = FileSecret(self.secret_file, "the webhook secret (webhook.secret_file)").read().get_secret_value()
        try:
            secret_key(value)
        except ValueError as exc:
            raise ConfigError(f"the webhook secret in {self.secret_file} {exc}") from None
        return value


class OpenAISourceConfig(SourceConfig):
    """A ``[[sources]]`` table of type ``openai``."""

    base_url: str = Field(default_factory=_default_base_url, validate_default=True)
    api_key_file: Path | None = None
    organization: str | None = None
    project: str | None = None
    webhook: PushConfig | None = None

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        # The SDK's OPENAI_BASE_URL ends in /v1; the paths here carry it themselves.
        return http_url(value).removesuffix("/v1")


#: The messages that say a job moved, as OpenAI words them (lower case, by prefix).
_MESSAGE_STATUS: tuple[tuple[str, str], ...] = (
    ("validating training file", "validating_files"),
    ("files validated, moving job to queued state", "queued"),
    ("fine-tuning job started", "running"),
    ("fine-tuning job resumed", "running"),
    ("the job has successfully completed", "succeeded"),
    ("the job failed", "failed"),
    ("job failed", "failed"),
    ("fine-tuning job failed", "failed"),
    ("the job was cancelled", "cancelled"),
    ("fine-tuning job cancelled", "cancelled"),
    ("job cancelled", "cancelled"),
)


def status_of_message(message: str, table: tuple[tuple[str, str], ...] = _MESSAGE_STATUS) -> str | None:
    """The status an event's message says the job entered, if it says one (``table``:
    the API's wordings, lower case, by prefix)."""
    text = message.strip().lower()
    for prefix, status in table:
        if text.startswith(prefix):
            return status
    return None


def _seconds(raw: dict[str, Any], field: str) -> int | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadDataError(f"{field} is a {type(value).__name__}, not Unix seconds")
    return int(value * 1_000_000_000)


def _job_progress(raw: dict[str, Any]) -> Progress | None:
    """What the job itself tells of its progress: when it should finish, and the
    tokens it trained on (known once it has)."""
    eta = _seconds(raw, "estimated_finish")
    tokens = optional_count(raw, "trained_tokens")
    return None if eta is None and tokens is None else Progress(eta_ns=eta, trained_tokens=tokens)


_STEP_OF = re.compile(r"step\s+(\d+)\s*/\s*(\d+)", re.IGNORECASE)


def metrics_progress(raw: Any) -> Progress | None:
    """A ``metrics`` event's step, total and losses (``data``, else its message
    "Step 10/30: training loss=…"); ``None`` for any other event. The keys are
    not in OpenAI's spec: what is not a count or a loss is ignored."""
    if not isinstance(raw, dict) or raw.get("type") != "metrics":
        return None
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    step, total = optional_count(data, "step"), optional_count(data, "total_steps")
    message = raw.get("message")
    if (step is None or total is None) and isinstance(message, str) and (found := _STEP_OF.search(message)):
        step = step if step is not None else int(found[1])
        total = total if total is not None else int(found[2])
    train, valid = optional_number(data, "train_loss"), optional_number(data, "valid_loss", "full_valid_loss")
    if step is None and train is None:
        return None
    return Progress(step=step, total_steps=total if total else None, train_loss=train, valid_loss=valid)


def _job(raw: Any) -> ModelInfo:
    job_id, status = id_and_status(raw, "id")
    finished = _seconds(raw, "finished_at")
    error = raw.get("error")
    failure = error.get("message") if isinstance(error, dict) else None
    return ModelInfo(
        id=job_id,
        name=optional_str(raw, "user_provided_suffix"),
        status=status,
        # When the current status began, where the job says: only a finished job does.
        updated_at=format_timestamp(finished) if finished is not None else None,
        fine_tuned_model=optional_str(raw, "fine_tuned_model"),
        failure=failure if isinstance(failure, str) and failure else None,
        progress=_job_progress(raw),
        created=_seconds(raw, "created_at"),
    )


def _event(raw: Any, table: tuple[tuple[str, str], ...] = _MESSAGE_STATUS) -> Event | None:
    """A status step, if this event is one; other events (metrics, checkpoints) are not."""
    if not isinstance(raw, dict):
        raise BadDataError("an event that is not an object")
    message = raw.get("message")
    if not isinstance(message, str):
        return None
    status = status_of_message(message, table)
    if status is None:
        return None
    return Event(status, _seconds(raw, "created_at"), message=message[:FAILURE_MAX] if status == "failed" else None)


@dataclass(frozen=True, slots=True)
class JobsApi:
    """Where an OpenAI-shaped API keeps its fine-tuning jobs, and how its events speak:
    OpenAI's own, and Azure OpenAI's (another path, a query on every request, other
    wordings, an event order it does not promise)."""

    jobs: str = _JOBS
    #: Sent with every request (Azure's ``api-version``).
    query: Mapping[str, str] = field(default_factory=dict)
    #: The messages that say a job moved (lower case, by prefix).
    messages: tuple[tuple[str, str], ...] = _MESSAGE_STATUS
    #: ``True``: events come newest first, so older pages need not be read past the
    #: horizon. ``False``: no order is promised: every page is read, and the differ
    #: orders them by time.
    events_newest_first: bool = True


class OpenAIShaped:
    """The jobs, one job and its events of an OpenAI-shaped API, through one
    :class:`~ftwatch.sources.http.ApiClient`; each provider's class brings its own
    configuration, credentials and words."""

    kind = SourceKind.SNAPSHOT

    def __init__(self, api: ApiClient, shape: JobsApi, max_pages: int) -> None:
        self._api = api
        self._shape = shape
        self._max_pages = max_pages

    async def _list(
        self, endpoint: str, path: str, stop_before_ns: int | None = None, *, one_job: bool = False
    ) -> tuple[list[Any], int]:
        """Every item of a paged list (``after`` the last one's id), and the pages it
        took; newest first, so with ``stop_before_ns`` older pages are not read."""

        async def fetch(after: str | None) -> Page:
            params: dict[str, Any] = {"limit": _PAGE, **self._shape.query}
            if after:
                params["after"] = after
            body = await self._api.get(endpoint, path, params, one_job=one_job)
            page = body.get("data")
            if not isinstance(page, list):
                raise SourceUnavailableError(f"{endpoint}: data is not a list")
            if not body.get("has_more") or not page:
                return page, None
            last = page[-1]
            cursor = last.get("id") if isinstance(last, dict) else None
            if not isinstance(cursor, str) or not cursor:
                raise SourceUnavailableError(f"{endpoint}: has_more without a last id to go on from")
            if stop_before_ns is not None:
                stamp = last.get("created_at")
                if isinstance(stamp, int | float) and stamp * 1e9 < stop_before_ns:
                    return page, None
            return page, cursor

        return await every_page(
            paginate(endpoint, fetch, max_pages=self._max_pages, cursor_name="last id with has_more")
        )

    async def list_models(self) -> ModelListing:
        raw_jobs, pages = await self._list("list_jobs", self._shape.jobs)
        return read_listing(raw_jobs, _job, "id", pages)

    async def get_model(self, model_id: str) -> ModelInfo:
        body = await self._api.get(
            "get_job", path_of(self._shape.jobs, model_id), dict(self._shape.query), one_job=True
        )
        return parsed(model_id, _job, body, "job")

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        """The job's status steps its events tell of, oldest first (newest pages only,
        with a horizon, where the API gives them newest first)."""
        shape = self._shape
        horizon = newer_than_ns if shape.events_newest_first else None
        path = path_of(shape.jobs, model_id, "/events")
        raw_events, _ = await self._list("list_job_events", path, horizon, one_job=True)
        if shape.events_newest_first or _newest_first(raw_events):
            raw_events.reverse()
        # Each step carries the newest training metrics told while it was the job's
        # latest status: the final loss of a job that just ended, and how far one
        # that just started is, cost no request of their own.
        steps: list[Event] = []
        latest: Progress | None = None
        for raw in raw_events:
            if (told := metrics_progress(raw)) is not None:
                latest = told
                if steps:
                    steps[-1] = replace(steps[-1], progress=latest)
                continue
            step = parsed(model_id, lambda item: _event(item, shape.messages), raw, "job")
            if step is not None:
                steps.append(replace(step, progress=latest))
        return steps

    async def read_progress(self, model_id: str) -> Progress | None:
        """A running job's newest training metrics: one request, the newest page of
        its events (:class:`~ftwatch.sources.protocol.ReadsProgress`)."""
        params: dict[str, Any] = {"limit": _PROGRESS_PAGE, **self._shape.query}
        path = path_of(self._shape.jobs, model_id, "/events")
        body = await self._api.get("list_job_events", path, params, one_job=True)
        page = body.get("data")
        if not isinstance(page, list):
            return None
        dated = [(raw.get("created_at"), n, raw) for n, raw in enumerate(page) if isinstance(raw, dict)]
        # Whatever order the page is in (Azure promises none): the newest metrics event.
        newest_first = sorted(
            (item for item in dated if isinstance(item[0], int | float) and not isinstance(item[0], bool)),
            key=lambda item: (item[0], -item[1] if self._shape.events_newest_first else item[1]),
            reverse=True,
        )
        return next((p for _, _, raw in newest_first if (p := metrics_progress(raw)) is not None), None)


def _newest_first(raw_events: list[Any]) -> bool:
    """Whether a list of events, whatever order it promised, runs newest first."""
    stamps = [e["created_at"] for e in raw_events if isinstance(e, dict) and isinstance(e.get("created_at"), int)]
    return len(stamps) > 1 and stamps[0] > stamps[-1]


class OpenAISource(OpenAIShaped, FromConfig, provider="openai", vocabulary=OPENAI, config_model=OpenAISourceConfig):
    """OpenAI's fine-tuning jobs."""

    def __init__(self, config: OpenAISourceConfig, deps: SourceContext) -> None:
        headers = {}
        if config.organization:
            headers["openai-organization"] = config.organization
        if config.project:
            headers["openai-project"] = config.project
        key = openai_key(config.api_key_file, deps.environ, where=config.where)
        dialect = ApiDialect("OpenAI", _ERROR_MESSAGE, headers)
        api = ApiClient(deps, BearerKey(key), dialect, base_url=config.base_url, retry=config)
        super().__init__(api, JobsApi(), config.max_pages)
