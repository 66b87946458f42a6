"""OpenAI's signed webhooks, received on the daemon's HTTP server: a nudge to poll.

``POST /webhooks/{source}`` for each source with ``[sources.webhook] secret``. A
message is taken only when its Standard Webhooks signature is one of that secret's,
its timestamp is fresh and its id is new; then the poll loop polls that source soon
(pushes are coalesced) instead of at the end of its interval. The message itself
changes nothing: polling stays the source of truth, so a forged, replayed or wrong
message can at worst ask for a poll that a genuine one would have asked for anyway
(and a rejected one not even that).

The endpoint faces the internet, so it is bounded on every side: a body is refused
by its ``Content-Length`` or cut at :data:`MAX_BODY` while streaming (never read
whole first), must arrive within :data:`BODY_TIMEOUT_S`, and at most
:data:`MAX_IN_FLIGHT` pushes are read at once (the others get 503 and the
connection is closed), so the health endpoints and the poll loop keep their sockets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ftwatch.standard_webhooks import ReplayGuard, WebhookRejectedError, verify

__all__ = ["BODY_TIMEOUT_S", "MAX_BODY", "MAX_IN_FLIGHT", "push_routes"]

log = structlog.get_logger("ftwatch.push")

#: OpenAI's fine-tuning events are thin (an id and a type): anything bigger is not one.
MAX_BODY = 64 * 1024
#: A genuine sender posts a few hundred bytes at once; a body still coming after this
#: long is a slow client holding a socket.
BODY_TIMEOUT_S = 10.0
#: Pushes read at the same time, over every source; the rest are turned away at once.
MAX_IN_FLIGHT = 64
_EVENTS = ("fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled")
_CLOSE = {"connection": "close"}


class _TooLargeError(Exception):
    pass


async def _bounded_body(request: Request) -> bytes:
    """The body, refused by its declared length, cut at the cap while it streams."""
    declared = request.headers.get("content-length")
    if declared is not None and (not (declared.isascii() and declared.isdigit()) or int(declared) > MAX_BODY):
        raise _TooLargeError
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def push_routes(
    secrets: Mapping[str, str],
    on_push: Callable[[str, str], Awaitable[bool]],
    counted: Callable[[str, str], None],
    clock: Callable[[], float] = time.time,
) -> list[Route]:
    """One route per source name -> secret; ``on_push(source, job_id)`` for each
    genuine message (False: the source does not watch that job), ``counted(source,
    outcome)`` for every one."""
    return [Route("/webhooks/{source}", _Intake(secrets, on_push, counted, clock).receive, methods=["POST"])]


class _Intake:
    """The webhook endpoint of every source that takes pushes (see the module)."""

    def __init__(
        self,
        secrets: Mapping[str, str],
        on_push: Callable[[str, str], Awaitable[bool]],
        counted: Callable[[str, str], None],
        clock: Callable[[], float],
    ) -> None:
        self.secrets, self.on_push, self.counted, self.clock = secrets, on_push, counted, clock
        self.guards = {name: ReplayGuard() for name in secrets}
        self.slots = anyio.CapacityLimiter(MAX_IN_FLIGHT)

    async def receive(self, request: Request) -> JSONResponse:
        name = request.path_params["source"]
        if name not in self.secrets:
            return JSONResponse({"error": "no such source takes webhooks"}, status_code=404, headers=_CLOSE)
        try:
            self.slots.acquire_nowait()
        except anyio.WouldBlock:
            self.counted(name, "busy")
            return JSONResponse({"error": "too many pushes at once"}, status_code=503, headers=_CLOSE)
        try:
            body = await self._body(name, request)
            return body if isinstance(body, JSONResponse) else await self._message(name, request, body)
        finally:
            self.slots.release()

    async def _body(self, name: str, request: Request) -> bytes | JSONResponse:
        """The body, or the answer to a sender that does not send one in bounds."""
        try:
            with anyio.fail_after(BODY_TIMEOUT_S):
                return await _bounded_body(request)
        except _TooLargeError:
            self.counted(name, "rejected")
            return JSONResponse({"error": "body too large"}, status_code=413, headers=_CLOSE)
        except TimeoutError:
            self.counted(name, "rejected")
            log.debug("push.rejected", source=name, reason="body too slow")
            return JSONResponse({"error": "body too slow"}, status_code=408, headers=_CLOSE)
        except ClientDisconnect:
            # The sender went away mid-body: nothing to answer, nothing to log loudly.
            self.counted(name, "rejected")
            log.debug("push.rejected", source=name, reason="client disconnected")
            return JSONResponse({"error": "disconnected"}, status_code=400, headers=_CLOSE)

    async def _message(self, name: str, request: Request, body: bytes) -> JSONResponse:
        """A whole body: verified, once, a job's end, of a job the source watches."""
        try:
            msg_id = verify(self.secrets[name], request.headers, body, self.clock())
        except WebhookRejectedError as exc:
            # Logged at debug only: anyone can post here, and a log is no place to flood.
            log.debug("push.rejected", source=name, reason=str(exc))
            self.counted(name, "rejected")
            return JSONResponse({"error": "invalid signature"}, status_code=400)
        if not self.guards[name].first_time(msg_id):
            self.counted(name, "replayed")
            return JSONResponse({"ok": True, "note": "already received"})
        job_id, kind = _job_of(body)
        if job_id is None or kind not in _EVENTS:
            self.counted(name, "ignored")
            return JSONResponse({"ok": True, "note": "not a fine-tuning job's end"})
        if not await self.on_push(name, job_id):
            self.counted(name, "ignored")
            return JSONResponse({"ok": True, "note": "not a job this source watches"})
        log.info("push.received", source=name, job_id=job_id[:120], type=kind)
        self.counted(name, "ok")
        return JSONResponse({"ok": True})


def _job_of(body: bytes) -> tuple[str | None, str | None]:
    try:
        event = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        return None, None
    job_id, kind = event["data"].get("id"), event.get("type")
    return (job_id if isinstance(job_id, str) else None), (kind if isinstance(kind, str) else None)
