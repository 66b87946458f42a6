"""Together fine-tunes: a snapshot source whose events fill in the steps between polls.

``GET /v1/fine-tunes`` lists every job at once (no paging; ``{"data": [job]}``), a
job is ``/v1/fine-tunes/{id}``, its events ``/v1/fine-tunes/{id}/events``. Statuses
are :data:`~ftwatch.statuses.TOGETHER`'s words; times ISO 8601. An event has no id: it
is a ``type`` (``job_pending``, ``job_start``, ``job_complete``, ``job_error``, …)
at a ``created_at``, with a ``message`` and a ``hash`` that is sometimes empty; the
types that say where the job went become status steps, the rest (epochs,
checkpoints) are training progress, not transitions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, field_validator

from ftwatch.errors import BadDataError
from ftwatch.model import Event, ModelInfo, ModelListing, Progress, normalized_timestamp, parse_timestamp
from ftwatch.secrets import TOGETHER_KEY, api_key
from ftwatch.sources.base import FromConfig, SourceConfig, SourceContext, SourceUnavailableError, http_url
from ftwatch.sources.fields import id_and_status, optional_count, optional_number, optional_str, parsed, path_of
from ftwatch.sources.http import ApiClient, ApiDialect, BearerKey, json_message
from ftwatch.sources.pages import read_listing
from ftwatch.statuses import TOGETHER
from ftwatch.textsafe import FAILURE_MAX

__all__ = ["EVENT_STATUS", "TogetherSource", "TogetherSourceConfig"]

_JOBS = "/v1/fine-tunes"
#: ``{"error": {"message", "type", "code"}}`` as OpenAI's, or a bare ``message``.
_DIALECT = ApiDialect("Together", json_message(("error", "message"), ("message",)))
#: The event types that tell a status, and the status each tells.
EVENT_STATUS: dict[str, str] = {
    "job_pending": "pending",
    "job_queued": "queued",
    "job_start": "running",
    "job_restart": "running",
    "cancel_requested": "cancel_requested",
    "job_cancelled": "cancelled",
    "job_complete": "completed",
    "job_error": "error",
    "job_user_error": "user_error",
}


class TogetherSourceConfig(SourceConfig):
    """A ``[[sources]]`` table of type ``together``."""

    #: Else ``TOGETHER_BASE_URL``, as Together's SDK reads it (its ``/v1`` is ours to add).
    base_url: str = Field(
        default_factory=lambda: os.environ.get("TOGETHER_BASE_URL") or "https://api.together.xyz",
        validate_default=True,
    )
    #: Else ``TOGETHER_API_KEY``, else the systemd credential ``together-api-key``.
    api_key_file: Path | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Together's own examples write the base with /v1; the paths here add it.
        return http_url(value).rstrip("/").removesuffix("/v1")


#: Together's words for a job that trains: only its countdown counts.
_RUNNING = frozenset(word for word, state in TOGETHER.states.items() if state == "running")


_T = TypeVar("_T")


def _read_time(value: Any, read: Callable[[str], _T]) -> _T | None:
    """``read`` of Together's time, which it writes some without a zone (meaning UTC);
    ``None`` if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return read(value if value[-1] in "Zz" or "+" in value[10:] else value + "Z")
    except ValueError:
        return None


def _progress(raw: dict[str, Any], status: str) -> Progress | None:
    """Steps done of the total, and the seconds left where Together has an estimate."""
    # ``type(...) is int``: a count, never a bool, a float or text. The common case is
    # checked inline, the odd one by the helpers: this runs for every job of every list.
    step, total = raw.get("steps_completed"), raw.get("total_steps")
    step = step if type(step) is int and step >= 0 else optional_count(raw, "steps_completed")
    total = total if type(total) is int and total > 0 else optional_count(raw, "total_steps") or None
    remaining = None
    estimate = raw.get("progress")
    if type(estimate) is dict and estimate.get("estimate_available") is True and status in _RUNNING:
        left = estimate.get("seconds_remaining")
        remaining = float(left) if type(left) is int and left >= 0 else optional_number(estimate, "seconds_remaining")
    if step is None and remaining is None:
        return None
    return Progress(step, total, None, None, remaining)


def _job(raw: Any) -> ModelInfo:
    job_id, status = id_and_status(raw, "id")
    return ModelInfo(
        id=job_id,
        name=optional_str(raw, "suffix") or optional_str(raw, "output_name"),
        status=status,
        updated_at=_read_time(raw.get("updated_at"), normalized_timestamp),
        fine_tuned_model=optional_str(raw, "output_name") if status == "completed" else None,
        progress=_progress(raw, status),
        created=optional_str(raw, "created_at"),
    )


def _step(raw: Any) -> Event | None:
    """A status step, if this event is one."""
    if not isinstance(raw, dict):
        raise BadDataError("an event that is not an object")
    kind = raw.get("type")
    status = EVENT_STATUS.get(kind) if isinstance(kind, str) else None
    if status is None:
        return None
    message = optional_str(raw, "message")
    failed = TOGETHER.state_of(status) == "failed"
    step = optional_count(raw, "step")
    progress = Progress(step=step, total_steps=optional_count(raw, "total_steps") or None) if step else None
    return Event(
        status,
        _read_time(raw.get("created_at"), parse_timestamp),
        message=message[:FAILURE_MAX] if message and failed else None,
        progress=progress,
    )


class TogetherSource(FromConfig, provider="together", vocabulary=TOGETHER, config_model=TogetherSourceConfig):
    """The key's fine-tunes, through one :class:`ApiClient`."""

    def __init__(self, config: TogetherSourceConfig, deps: SourceContext) -> None:
        where = config.where
        key = api_key(TOGETHER_KEY, config.api_key_file, deps.environ, where=where, file_label=f"{where} api_key_file")
        self._api = ApiClient(deps, BearerKey(key), _DIALECT, base_url=config.base_url, retry=config)

    async def _data(self, endpoint: str, path: str, *, one_job: bool = False) -> list[Any]:
        body = await self._api.get(endpoint, path, one_job=one_job)
        items = body.get("data", [])
        if not isinstance(items, list):
            raise SourceUnavailableError(f"{endpoint}: data is not a list")
        return items

    async def list_models(self) -> ModelListing:
        """Every job in one request: Together's list has no pages."""
        return read_listing(await self._data("list_jobs", _JOBS), _job, "id", 1)

    async def get_model(self, model_id: str) -> ModelInfo:
        body = await self._api.get("get_job", path_of(_JOBS, model_id), one_job=True)
        return parsed(model_id, _job, body, "job")

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        """The job's status steps its events tell of, in the API's order (oldest
        first): the differ orders them by time, and keeps this order for steps of one
        millisecond, the finest Together writes."""
        raw_events = await self._data("list_job_events", path_of(_JOBS, model_id, "/events"), one_job=True)
        return [step for raw in raw_events if (step := parsed(model_id, _step, raw, "job")) is not None]
