"""OpenAI's signed webhooks, received on the daemon's HTTP server: a nudge to poll.

``POST /webhooks/{source}`` for each source with ``[sources.webhook] secret``. A
message is taken only when its Standard Webhooks signature is one of that secret's,
its timestamp is fresh and its id is new; then the poll loop runs at once instead of
at the end of its interval. The message itself changes nothing: polling stays the
source of truth, so a forged, replayed or wrong message can at worst ask for a poll
that a genuine one would have asked for anyway (and a rejected one not even that).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ftwatch.standard_webhooks import ReplayGuard, WebhookRejectedError, verify

__all__ = ["MAX_BODY", "push_routes"]

log = structlog.get_logger("ftwatch.push")

#: OpenAI's fine-tuning events are thin (an id and a type): anything bigger is not one.
MAX_BODY = 64 * 1024
_EVENTS = ("fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled")


def push_routes(
    secrets: Mapping[str, str],
    on_push: Callable[[str, str], None],
    counted: Callable[[str, str], None],
    clock: Callable[[], float] = time.time,
) -> list[Route]:
    """One route per source name -> secret; ``on_push(source, job_id)`` for each
    genuine message, ``counted(source, outcome)`` for every one."""
    guards = {name: ReplayGuard() for name in secrets}

    async def receive(request: Request) -> JSONResponse:
        name = request.path_params["source"]
        if name not in secrets:
            return JSONResponse({"error": "no such source takes webhooks"}, status_code=404)
        body = await request.body()
        if len(body) > MAX_BODY:
            counted(name, "rejected")
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            msg_id = verify(secrets[name], request.headers, body, clock())
        except WebhookRejectedError as exc:
            # Logged at debug only: anyone can post here, and a log is no place to flood.
            log.debug("push.rejected", source=name, reason=str(exc))
            counted(name, "rejected")
            return JSONResponse({"error": "invalid signature"}, status_code=400)
        if not guards[name].first_time(msg_id):
            counted(name, "replayed")
            return JSONResponse({"ok": True, "note": "already received"})
        job_id, kind = _job_of(body)
        if job_id is None or kind not in _EVENTS:
            counted(name, "ignored")
            return JSONResponse({"ok": True, "note": "not a fine-tuning job's end"})
        log.info("push.received", source=name, job_id=job_id, type=kind)
        counted(name, "ok")
        on_push(name, job_id)
        return JSONResponse({"ok": True})

    return [Route("/webhooks/{source}", receive, methods=["POST"])]


def _job_of(body: bytes) -> tuple[str | None, str | None]:
    try:
        event = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        return None, None
    job_id, kind = event["data"].get("id"), event.get("type")
    return (job_id if isinstance(job_id, str) else None), (kind if isinstance(kind, str) else None)
