"""A simulated Cohere fine-tuning API v1, over real HTTP on 127.0.0.1.

Faithful to the contract's quirks: page sizes capped below what is asked, a missing or
empty ``next_page_token`` on the last page, zero values left out, 6 or 9 fractional
digits, a default event order opposite to the explicit one, a per-key rate limit. Faults
are injected on demand: 429 with ``Retry-After``, 500/503, malformed JSON, a connection
dropped mid-response, slow answers.

It stands alone (it imports nothing else of ftwatch but the timestamp helpers and
the simulators' kit) and
serves the tests, the benchmarks and ``ftwatch demo``. Its state is guarded by a lock
so a test thread may change it while the server runs in another.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field
from typing import Any, Unpack

from starlette.requests import Request
from starlette.responses import Response

from ftwatch.model import format_timestamp
from ftwatch.sim.kit import Fault, SimOptions, SimServer, running_in_thread

__all__ = ["DEFAULT_KEY", "CohereSimulator", "Fault", "SimEvent", "SimModel", "running_in_thread"]

DEFAULT_KEY = "sim-key"


@dataclass(slots=True)
class SimEvent:
    status: str
    created_at_ns: int
    user_id: str | None = None
    #: Served as it is instead of the fields above (odd timestamps, wrong types).
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class SimModel:
    id: str
    name: str
    status: str
    created_at_ns: int
    updated_at_ns: int
    events: list[SimEvent] = field(default_factory=list)
    #: Fields served instead of (or besides) the computed ones, e.g. a list ``name``.
    overrides: dict[str, Any] = field(default_factory=dict)


def _stamp(ns: int) -> str:
    # Both precisions the real API uses: 9 digits when the nanoseconds say something.
    return format_timestamp(ns, 9 if ns % 1000 else 6)


class CohereSimulator(SimServer[SimModel]):
    """The fake API: its models, keys, faults and request log."""

    key_variable = "CO_API_KEY"

    default_keys = (DEFAULT_KEY,)
    default_rate_limit = 500

    def __init__(
        self,
        *,
        max_page_size: int = 100,
        updated_at_lag_s: float = 0.0,
        coarse_updated_at: bool = False,
        **options: Unpack[SimOptions],
    ) -> None:
        """``updated_at_lag_s``: the list's ``updated_at`` is that much earlier than the
        event that set the status (another clock); ``coarse_updated_at``: it has
        microseconds only, while events keep nanoseconds."""
        super().__init__(**options)
        self.max_page_size = max_page_size
        self.updated_at_lag_ns = int(updated_at_lag_s * 1e9)
        self.coarse_updated_at = coarse_updated_at
        self.client_names: collections.Counter[str] = collections.Counter()
        self._ids = itertools.count(1)
        self.app = self.jobs_app(
            "/v1/finetuning/finetuned-models",
            self._list_models,
            one="/{model_id}",
            get_job=self._get_model,
            events=self._list_events,
        )

    # --- driving it ---------------------------------------------------------------

    provider = "cohere"
    lifecycle = ("STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_READY")
    failed_status = "STATUS_FAILED"

    def add_job(self, name: str, status: str | None = None) -> str:
        return self.add_model(name, status or self.lifecycle[0])

    def job_row(self, job: SimModel) -> tuple[str, str]:
        return job.name, job.status

    def add_model(
        self,
        name: str,
        status: str = "STATUS_QUEUED",
        *,
        model_id: str | None = None,
        user_id: str | None = "user-1",
        history: tuple[str, ...] = (),
        created_at_ns: int | None = None,
    ) -> str:
        """Create a model; ``history`` statuses come before ``status`` in its events.
        ``created_at_ns``: created then (its events a microsecond apart), not now."""
        with self._lock:
            model_id = model_id or f"ft-{next(self._ids):06d}"
            now = self._now_ns() if created_at_ns is None else created_at_ns
            model = SimModel(model_id, name, status, now, now)
            for n, earlier in enumerate((*history, status)):
                at = self._now_ns() if created_at_ns is None else created_at_ns + n * 1_000
                model.events.append(SimEvent(earlier, at, user_id if not model.events else None))
            model.updated_at_ns = model.events[-1].created_at_ns
            self._jobs[model_id] = model
            return model_id

    def set_status(
        self,
        model_id: str,
        status: str,
        *,
        user_id: str | None = None,
        at_ns: int | None = None,
        touch_updated_at: bool = True,
        hide_from_list: bool = False,
    ) -> int:
        """Append an event and change the model's status. Returns the event's time.

        ``touch_updated_at=False``: the list shows the new status but the old
        ``updated_at``. ``hide_from_list=True``: the list shows nothing of it at all
        (as an eventually consistent list might, for a while).
        """
        with self._lock:
            model = self._jobs[model_id]
            at = self._now_ns() if at_ns is None else at_ns
            model.events.append(SimEvent(status, at, user_id))
            if not hide_from_list:
                model.status = status
                if touch_updated_at:
                    model.updated_at_ns = max(model.updated_at_ns, at)
            return at

    def add_raw_event(self, model_id: str, raw: dict[str, Any], *, status: str | None = None) -> None:
        """Append an event served exactly as ``raw``; ``status`` also sets the model's."""
        with self._lock:
            model = self._jobs[model_id]
            model.events.append(SimEvent(str(raw.get("status", "")), self._now_ns(), raw=raw))
            if status is not None:
                model.status = status
                model.updated_at_ns = self._now_ns()

    # Cohere calls its jobs models.
    def model(self, model_id: str) -> SimModel:
        return self.job(model_id)

    def remove_model(self, model_id: str) -> None:
        self.remove_job(model_id)

    # --- serving ------------------------------------------------------------------

    malformed_body = b'{"finetuned_models": [{"id": '

    def _before(self, request: Request) -> None:
        self.client_names[request.headers.get("x-client-name", "")] += 1

    def _page(self, request: Request, items: list[dict[str, Any]], key: str, omit_empty_token: bool) -> dict[str, Any]:
        try:
            asked = int(request.query_params.get("page_size") or 10)
            offset = int(request.query_params.get("page_token") or 0)
        except ValueError:
            asked, offset = 10, 0
        size = max(1, min(asked, self.max_page_size))
        page = items[offset : offset + size]
        body: dict[str, Any] = {key: page, "total_size": len(items)}
        if offset + size < len(items):
            body["next_page_token"] = str(offset + size)
        elif not omit_empty_token:
            body["next_page_token"] = ""
        return body

    def _updated_at(self, model: SimModel) -> str:
        ns = model.updated_at_ns - self.updated_at_lag_ns
        if self.coarse_updated_at:
            return format_timestamp(ns - ns % 1000, 6)
        return _stamp(ns)

    def _model_json(self, model: SimModel) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": model.id,
            "name": model.name,
            "creator_id": "user-1",
            "organization_id": "org-1",
            "settings": {"base_model": {"base_type": "BASE_TYPE_CLASSIFICATION"}},
            "created_at": _stamp(model.created_at_ns),
            "updated_at": self._updated_at(model),
        }
        if model.status != "STATUS_UNSPECIFIED":  # zero values are left out
            out["status"] = model.status
        if model.status == "STATUS_READY":
            out["completed_at"] = _stamp(model.updated_at_ns)
        return out | model.overrides

    async def _list_models(self, request: Request) -> Response:
        with self._lock:
            models = sorted(self._jobs.values(), key=lambda m: (m.created_at_ns, m.id))
            items = [self._model_json(m) for m in models]
        return await self.handle(request, "list_models", None, self._page(request, items, "finetuned_models", True))

    async def _get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        with self._lock:
            model = self._jobs.get(model_id)
            body: Any = {"finetuned_model": self._model_json(model)} if model else 404
        return await self.handle(request, "get_model", model_id, body)

    async def _list_events(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        order = request.query_params.get("order_by", "").strip().lower()
        with self._lock:
            model = self._jobs.get(model_id)
            body: Any = 404
            if model is not None:
                # Explicit "created_at" is ascending; anything else (even none) newest first.
                events = sorted(model.events, key=lambda e: e.created_at_ns, reverse=order != "created_at")
                items = []
                for event in events:
                    if event.raw is not None:
                        items.append(event.raw)
                        continue
                    item: dict[str, Any] = {"created_at": _stamp(event.created_at_ns)}
                    if event.status != "STATUS_UNSPECIFIED":
                        item["status"] = event.status
                    if event.user_id:
                        item["user_id"] = event.user_id
                    items.append(item)
                body = self._page(request, items, "events", False)
        return await self.handle(request, "list_events", model_id, body)
