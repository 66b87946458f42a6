"""What every simulated provider API shares: serving on 127.0.0.1, a lock for its
state, a request log, a per-key rate limit, and injected faults (429 with
``Retry-After``, 500/503, malformed JSON, a gzip body that fails to decode, a
connection dropped mid-response, slow answers).

A provider's simulator subclasses :class:`SimServer` with its routes, how it reads
the caller's key, and how its errors look.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypedDict, TypeVar, Unpack

import anyio
import anyio.from_thread
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ftwatch.serving import bind_socket, serve_asgi

__all__ = ["Fault", "LoggedRequest", "SimServer", "bearer", "google_error", "running_in_thread", "token_page"]


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


#: A route's handler, as the simulators write them.
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    at: float
    endpoint: str
    model_id: str | None
    code: int
    key_ok: bool


class _DroppedError(Exception):
    """Raised after the response has started: the server drops the connection."""


class _DroppingResponse(Response):
    """Starts a response, then fails: the server closes the connection mid-body."""

    def __init__(self) -> None:
        super().__init__(b"", media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"data', "more_body": True})
        raise _DroppedError


class _Job(Protocol):
    #: Fields served as given instead of the job's own (wrong types included).
    overrides: dict[str, Any]


_JobT = TypeVar("_JobT", bound=_Job)


class SimOptions(TypedDict, total=False):
    """What every simulator is built with (each has its own defaults)."""

    #: The keys it takes (its ``DEFAULT_KEY`` unless told).
    keys: tuple[str, ...]
    #: Requests a minute per key before it answers 429.
    rate_limit_per_minute: int
    #: Added to every answer.
    latency_s: float


class SimServer(Generic[_JobT]):
    """The plumbing of one simulated API (see the module), its jobs of type ``_JobT``
    by id under the lock. A simulator's own constructor takes its own options and
    passes :class:`SimOptions` on, its defaults in :attr:`default_keys` and
    :attr:`default_rate_limit`."""

    app: Starlette
    default_keys: ClassVar[tuple[str, ...]] = ()
    default_rate_limit: ClassVar[int] = 600

    def __init__(self, **options: Unpack[SimOptions]) -> None:
        self.keys = set(options.get("keys", self.default_keys))
        self.rate_limit_per_minute = options.get("rate_limit_per_minute", self.default_rate_limit)
        self.latency_s = options.get("latency_s", 0.0)
        self.requests: list[LoggedRequest] = []
        #: Requests to paths that are no part of the API (an id that climbed out).
        self.stray_paths: list[str] = []
        #: Jobs whose own endpoints answer 403 while the list works (an IAM deny).
        self.denied: set[str] = set()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._jobs: dict[str, _JobT] = {}
        self._recent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        #: How far the provider's clock is from ours (a skewed API, for tests).
        self.clock_offset_ns = 0
        self._clock_ns = 0
        self.url = ""

    # --- what a provider's simulator says -------------------------------------------

    def jobs_app(
        self,
        jobs: str,
        list_jobs: Endpoint,
        *,
        one: str = "/{job_id}",
        get_job: Endpoint | None = None,
        events: Endpoint | None = None,
        before: Sequence[Route] = (),
    ) -> Starlette:
        """The app of a jobs API: ``jobs`` lists them, ``jobs + one`` is one job (its
        events below it, where the API has them); any other path is :meth:`stray`."""
        routes = [*before, Route(jobs, list_jobs), Route(jobs + one, get_job or self.answer_job)]
        if events is not None:
            routes.append(Route(jobs + one + "/events", events))
        return Starlette(routes=[*routes, Route("/{path:path}", self.stray)])

    async def answer_token_list(
        self, request: Request, key: str, page_size: int, *, created: Callable[[Any], Any], total: bool = False
    ) -> Response:
        """The job list of a ``pageSize``/``pageToken`` API (Google's, Fireworks'), newest
        ``created`` first: 404 outside its scope, 400 for a token none of ours, ``{}``
        for an empty page (proto3 JSON leaves an empty list out), ``totalSize`` where
        the API tells it."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=created, reverse=True)
            in_scope = self.job_in_scope(request)
            paged = token_page(request, jobs, page_size) if in_scope else None
            body: Any = 404 if not in_scope else 400
            if paged is not None:
                page, token = paged
                body = {key: [self.render_job(j) for j in page]} if page else {}
                if page and total:
                    body["totalSize"] = len(jobs)
                if token:
                    body["nextPageToken"] = token
        return await self.handle(request, "list_models", None, body)

    def caller_key(self, request: Request, body: bytes) -> str | None:
        """The key the request was made with, if it is one of ours; ``None`` if not
        (a Bearer key, unless the provider says otherwise)."""
        key = bearer(request)
        return key if key in self.keys else None

    def render_job(self, job: _JobT) -> Any:
        """A job as the API shows it (the simulators that serve one job say how)."""
        raise NotImplementedError

    def job_in_scope(self, request: Request) -> bool:
        """Whether the request's path names this API's own account or project."""
        return True

    async def answer_job(self, request: Request) -> Response:
        """``GET`` one job by the ``job_id`` of its path: the job, or 404."""
        return await self.answer_about_job(request, "get_model", self.render_job)

    async def answer_about_job(self, request: Request, endpoint: str, render: Callable[[_JobT], Any]) -> Response:
        """What ``render`` makes of the job the path's ``job_id`` names (under the
        lock), or 404."""
        job_id = request.path_params["job_id"]
        with self._lock:
            job = self._jobs.get(job_id) if self.job_in_scope(request) else None
            body: Any = render(job) if job is not None else 404
        return await self.handle(request, endpoint, job_id, body)

    def error(self, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
        """An error answer in the provider's own shape."""
        return JSONResponse({"message": message}, status_code=code, headers=headers)

    #: What a ``malformed`` fault serves: the start of a body, cut off.
    malformed_body = b'{"data": [{"id": '

    # --- the SimulatedProvider interface (see ftwatch.sim) -----------------------------

    provider: ClassVar[str]
    #: Its statuses from the first to a good end, and its word for a failure.
    lifecycle: ClassVar[tuple[str, ...]]
    failed_status: ClassVar[str]

    def add_job(self, name: str, status: str | None = None) -> str:
        """A new job (model) named ``name``, in ``status`` (the first of the
        lifecycle by default); returns its id."""
        raise NotImplementedError

    def set_status(self, job_id: str, status: str) -> Any:
        """Move the job to ``status`` now; :meth:`arrive` says what else that changes
        (the simulators whose moves take options of their own say it here)."""
        with self._lock:
            self.arrive(self._jobs[job_id], status, self._now_ns())

    def arrive(self, job: _JobT, status: str, now_ns: int) -> None:
        """What the job's reaching ``status`` at ``now_ns`` changes (the lock held)."""
        raise NotImplementedError

    #: Where the provider tells a running job's progress: ``"list"`` (its entry),
    #: ``"events"`` (metrics events), ``"end"`` (a finished job's detail) or ``""``.
    tells_progress: ClassVar[str] = ""

    def train(self, job_id: str, step: int, total: int = 100) -> None:
        """The job reports training step ``step`` of ``total``, as the provider tells
        it (nothing, where it does not)."""

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Every job: id -> (name, status)."""
        with self._lock:
            return {job_id: self.job_row(job) for job_id, job in self._jobs.items()}

    def job_row(self, job: _JobT) -> tuple[str, str]:
        """A job's name and status, whatever its own fields call them."""
        raise NotImplementedError

    #: The ``[[sources]]`` key its address goes in, and what else that table says.
    url_key: ClassVar[str] = "base_url"
    table: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: The environment variable of the provider's key.
    key_variable: ClassVar[str] = ""

    def source_table(self, **extra: Any) -> dict[str, Any]:
        """The ``[[sources]]`` table that watches this simulator (once serving)."""
        return {"type": self.provider, self.url_key: self.url, **dict(self.table)} | extra

    def credentials_env(self, tmp: Path) -> dict[str, str]:
        """The environment a user would set for this provider's key (``tmp``: where
        nothing of the user's is read from, for providers that look in files)."""
        return {self.key_variable: self.default_keys[0]}

    # --- driving it ---------------------------------------------------------------

    def job(self, job_id: str) -> _JobT:
        with self._lock:
            return self._jobs[job_id]

    def override(self, job_id: str, **fields: Any) -> None:
        """Serve these fields of the job as given (wrong types included)."""
        with self._lock:
            self._jobs[job_id].overrides.update(fields)

    def remove_job(self, job_id: str) -> None:
        """Make the job vanish entirely (404 from then on)."""
        with self._lock:
            del self._jobs[job_id]

    def _now_ns(self) -> int:
        # Strictly increasing, so two changes in a row never share a timestamp by accident.
        self._clock_ns = max(time.time_ns() + self.clock_offset_ns, self._clock_ns + 1)
        return self._clock_ns

    def inject(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

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

    def _before(self, request: Request) -> None:
        """Called with the lock held for every request (a subclass counts headers)."""

    async def handle(self, request: Request, endpoint: str, model_id: str | None, body: Any) -> Response:
        """Answer with ``body`` (a JSON-able object, or an int: that error code), after
        the key, the rate limit and any fault have had their say."""
        if self.latency_s:
            await anyio.sleep(self.latency_s)
        raw = await request.body()
        key = self.caller_key(request, raw)
        now = time.monotonic()
        with self._lock:
            self._before(request)
            key_ok = key is not None
            retry_after = self._rate_limited(key, now) if key is not None else None
            fault = self._take_fault(endpoint, model_id) if key_ok and retry_after is None else None
            if key_ok and model_id is not None and model_id in self.denied:
                response = self.error(403, self.denied_message(endpoint, model_id))
            else:
                response = self._respond(key_ok, retry_after, fault, body)
            self.requests.append(LoggedRequest(now, endpoint, model_id, response.status_code, key_ok))
        if fault is not None and fault.kind == "slow":
            await anyio.sleep(fault.delay_s)
        if fault is not None and fault.kind == "drop":
            return _DroppingResponse()
        return response

    def refused(self) -> Response:
        return self.error(401, "invalid api token")

    def denied_message(self, endpoint: str, model_id: str) -> str:
        """What a 403 on one denied job says (a resource-level deny)."""
        return f"User is not authorized to perform {endpoint} on resource {model_id} with an explicit deny"

    def _respond(self, key_ok: bool, retry_after: float | None, fault: Fault | None, body: Any) -> Response:
        if not key_ok:
            return self.refused()
        if retry_after is not None:
            return self.error(429, "too many requests", {"retry-after": f"{retry_after:.0f}"})
        if fault is not None and fault.kind == "429":
            return self.error(429, "too many requests", {"retry-after": f"{fault.retry_after_s:g}"})
        if fault is not None and fault.kind in ("500", "503"):
            return self.error(int(fault.kind), "internal error")
        if fault is not None and fault.kind == "malformed":
            return Response(self.malformed_body, media_type="application/json")
        if fault is not None and fault.kind == "badgzip":
            return Response(
                b"\x1f\x8b\x08\x00garbage-not-deflate",
                media_type="application/json",
                headers={"content-encoding": "gzip"},
            )
        if isinstance(body, int):
            return self.error(body, "not found")
        return JSONResponse(body)

    async def stray(self, request: Request) -> Response:
        with self._lock:
            self.stray_paths.append(request.url.path)
        return self.error(404, "no such endpoint")


def bearer(request: Request) -> str:
    """The key of an ``Authorization: Bearer`` header ("" without one)."""
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""


def google_error(code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error as Google's APIs (and Fireworks', which copies them) write one:
    ``{"error": {"code", "message", "status"}}`` with the canonical status name."""
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
    status = names.get(code, "RESOURCE_EXHAUSTED" if code == 429 else "INTERNAL")
    return JSONResponse({"error": {"code": code, "message": message, "status": status}}, code, headers)


def token_page(request: Request, items: list[_T], page_size: int) -> tuple[list[_T], str | None] | None:
    """One page of ``items`` as a ``pageSize``/``pageToken`` API (Google's, Fireworks')
    pages them, and the opaque token of the next (``None`` on the last page, which
    proto3 JSON leaves out); ``None`` for a token that is none of ours (a 400)."""
    try:
        size = max(1, min(int(request.query_params.get("pageSize") or page_size), page_size))
        start = int(base64.urlsafe_b64decode(request.query_params.get("pageToken") or "MA=="))
    except ValueError:
        return None
    more = start + size < len(items)
    return items[start : start + size], base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None


_S = TypeVar("_S", bound=SimServer[Any])
_T = TypeVar("_T")


@contextlib.contextmanager
def running_in_thread(simulator: _S) -> Iterator[_S]:
    """Run a simulator's server in a thread of its own (for tests and benchmarks)."""
    with anyio.from_thread.start_blocking_portal() as portal:
        future, _ = portal.start_task(simulator.serve)
        try:
            yield simulator
        finally:
            future.cancel()
