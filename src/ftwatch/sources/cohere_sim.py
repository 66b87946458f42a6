"""A simulated Cohere fine-tuning API v1, over real HTTP on 127.0.0.1.

Faithful to the contract's quirks: page sizes capped below what is asked, a missing or
empty ``next_page_token`` on the last page, zero values left out, 6 or 9 fractional
digits, a default event order opposite to the explicit one, a per-key rate limit. Faults
are injected on demand: 429 with ``Retry-After``, 500/503, malformed JSON, a connection
dropped mid-response, slow answers.

It stands alone (it imports nothing else of ftwatch but the timestamp helpers) and
serves the tests, the benchmarks and ``ftwatch demo``. Its state is guarded by a lock
so a test thread may change it while the server runs in another.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ftwatch.model import format_timestamp
from ftwatch.ops.http import bind_socket, serve_asgi

__all__ = ["Fault", "SimEvent", "SimModel", "Simulator", "running_in_thread"]

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


@dataclass(slots=True)
class Fault:
    """One injected failure. ``kind``: ``429``, ``500``, ``503``, ``malformed``,
    ``badgzip`` (a gzip body that fails to decode), ``drop`` (connection closed
    mid-response) or ``slow`` (``delay_s`` before answering)."""

    kind: str
    endpoint: str | None = None  # list_models, get_model, list_events; None: any
    model_id: str | None = None
    retry_after_s: float = 1.0
    delay_s: float = 5.0


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    at: float
    endpoint: str
    model_id: str | None
    code: int
    key_ok: bool


def _stamp(ns: int) -> str:
    # Both precisions the real API uses: 9 digits when the nanoseconds say something.
    return format_timestamp(ns, 9 if ns % 1000 else 6)


class _DroppedError(Exception):
    """Raised after the response has started: the server drops the connection."""


class Simulator:
    """The fake API: its models, keys, faults and request log."""

    def __init__(
        self,
        *,
        keys: tuple[str, ...] = (DEFAULT_KEY,),
        max_page_size: int = 100,
        rate_limit_per_minute: int = 500,
        latency_s: float = 0.0,
        updated_at_lag_s: float = 0.0,
        coarse_updated_at: bool = False,
    ) -> None:
        """``updated_at_lag_s``: the list's ``updated_at`` is that much earlier than the
        event that set the status (another clock); ``coarse_updated_at``: it has
        microseconds only, while events keep nanoseconds."""
        self.keys = set(keys)
        self.max_page_size = max_page_size
        self.rate_limit_per_minute = rate_limit_per_minute
        self.latency_s = latency_s
        self.updated_at_lag_ns = int(updated_at_lag_s * 1e9)
        self.coarse_updated_at = coarse_updated_at
        self.requests: list[LoggedRequest] = []
        #: Requests to paths that are no part of the API (an id that climbed out).
        self.stray_paths: list[str] = []
        self.client_names: collections.Counter[str] = collections.Counter()
        self._models: dict[str, SimModel] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._clock_ns = time.time_ns()
        self._recent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/v1/finetuning/finetuned-models", self._list_models),
                Route("/v1/finetuning/finetuned-models/{model_id}", self._get_model),
                Route("/v1/finetuning/finetuned-models/{model_id}/events", self._list_events),
                Route("/{path:path}", self._stray),
            ]
        )

    # --- driving it ---------------------------------------------------------------

    def _now_ns(self) -> int:
        # Strictly increasing, so two changes in a row never share a timestamp by accident.
        self._clock_ns = max(time.time_ns(), self._clock_ns + 1)
        return self._clock_ns

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
            self._models[model_id] = model
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
            model = self._models[model_id]
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
            model = self._models[model_id]
            model.events.append(SimEvent(str(raw.get("status", "")), self._now_ns(), raw=raw))
            if status is not None:
                model.status = status
                model.updated_at_ns = self._now_ns()

    def override(self, model_id: str, **fields: Any) -> None:
        """Serve these fields of the model as given (wrong types included)."""
        with self._lock:
            self._models[model_id].overrides.update(fields)

    def remove_model(self, model_id: str) -> None:
        """Make the model vanish entirely (404 from then on)."""
        with self._lock:
            del self._models[model_id]

    def model(self, model_id: str) -> SimModel:
        with self._lock:
            return self._models[model_id]

    def inject(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def count(self, endpoint: str | None = None, code: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (endpoint is None or r.endpoint == endpoint) and (code is None or r.code == code)
            )

    # --- serving ------------------------------------------------------------------

    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``task_status.started`` gets the base URL."""
        sock = bind_socket(host, port)
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        async with anyio.create_task_group() as group:
            await group.start(serve_asgi, self.app, sock)
            task_status.started(self.url)

    def _take_fault(self, endpoint: str, model_id: str | None) -> Fault | None:
        for index, fault in enumerate(self._faults):
            if (fault.endpoint in (None, endpoint)) and (fault.model_id in (None, model_id)):
                return self._faults.pop(index)
        return None

    def _rate_limited(self, key: str, now: float) -> float | None:
        window = self._recent[key]
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= self.rate_limit_per_minute:
            return max(window[0] + 60.0 - now, 0.001)
        window.append(now)
        return None

    async def _handle(self, request: Request, endpoint: str, model_id: str | None, body: Any) -> Response:
        if self.latency_s:
            await anyio.sleep(self.latency_s)
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        now = time.monotonic()
        with self._lock:
            self.client_names[request.headers.get("x-client-name", "")] += 1
            key_ok = key in self.keys
            retry_after = self._rate_limited(key, now) if key_ok else None
            fault = self._take_fault(endpoint, model_id) if key_ok and retry_after is None else None
            response = self._respond(key_ok, retry_after, fault, body)
            self.requests.append(LoggedRequest(now, endpoint, model_id, response.status_code, key_ok))
        if fault is not None and fault.kind == "slow":
            await anyio.sleep(fault.delay_s)
        if fault is not None and fault.kind == "drop":
            return _DroppingResponse()
        return response

    def _respond(self, key_ok: bool, retry_after: float | None, fault: Fault | None, body: Any) -> Response:
        if not key_ok:
            return JSONResponse({"message": "invalid api token"}, status_code=401)
        if retry_after is not None:
            return JSONResponse(
                {"message": "too many requests"}, status_code=429, headers={"retry-after": f"{retry_after:.0f}"}
            )
        if fault is not None and fault.kind == "429":
            return JSONResponse(
                {"message": "too many requests"}, status_code=429, headers={"retry-after": f"{fault.retry_after_s:g}"}
            )
        if fault is not None and fault.kind in ("500", "503"):
            return JSONResponse({"message": "internal error"}, status_code=int(fault.kind))
        if fault is not None and fault.kind == "malformed":
            return Response(b'{"finetuned_models": [{"id": ', media_type="application/json")
        if fault is not None and fault.kind == "badgzip":
            return Response(
                b"\x1f\x8b\x08\x00garbage-not-deflate",
                media_type="application/json",
                headers={"content-encoding": "gzip"},
            )
        if isinstance(body, int):
            return JSONResponse({"message": "not found"}, status_code=body)
        return JSONResponse(body)

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
            models = sorted(self._models.values(), key=lambda m: (m.created_at_ns, m.id))
            items = [self._model_json(m) for m in models]
        return await self._handle(request, "list_models", None, self._page(request, items, "finetuned_models", True))

    async def _get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        with self._lock:
            model = self._models.get(model_id)
            body: Any = {"finetuned_model": self._model_json(model)} if model else 404
        return await self._handle(request, "get_model", model_id, body)

    async def _list_events(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        order = request.query_params.get("order_by", "").strip().lower()
        with self._lock:
            model = self._models.get(model_id)
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
        return await self._handle(request, "list_events", model_id, body)

    async def _stray(self, request: Request) -> Response:
        with self._lock:
            self.stray_paths.append(request.url.path)
        return JSONResponse({"message": "no such endpoint"}, status_code=404)


class _DroppingResponse(Response):
    """Starts a response, then fails: the server closes the connection mid-body."""

    def __init__(self) -> None:
        super().__init__(b"", media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"finetuned', "more_body": True})
        raise _DroppedError


@contextlib.contextmanager
def running_in_thread(simulator: Simulator) -> Iterator[Simulator]:
    """Run the simulator's server in a thread of its own (for tests and benchmarks)."""
    with anyio.from_thread.start_blocking_portal() as portal:
        future, _ = portal.start_task(simulator.serve)
        try:
            yield simulator
        finally:
            future.cancel()
