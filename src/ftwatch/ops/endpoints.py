"""The daemon's HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics``, and the
status page ``/`` with its JSON ``/api/v1/jobs`` (unless ``[http] ui = false``).

Liveness says only whether the loop makes progress, never whether the API is up:
restarting ftwatch cannot fix a provider's API. Readiness says whether polling works.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio.abc
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ftwatch.errors import ConfigError
from ftwatch.ops.board import StatusBoard
from ftwatch.ops.health import Health
from ftwatch.ops.http import quiet_accept_errors, raise_open_files_limit
from ftwatch.ops.metrics import Metrics
from ftwatch.serving import bind_socket, serve_asgi

__all__ = ["board_routes", "health_app", "serve_endpoints"]

log = structlog.get_logger("ftwatch.daemon")


def health_app(
    health: Health, metrics: Metrics, extra: Sequence[Route] = (), board: StatusBoard | None = None
) -> Starlette:
    """The endpoints, ``extra`` routes (the webhooks a source takes), and the status
    page of ``board`` (none: no page)."""

    async def healthz(request: Request) -> PlainTextResponse:
        if health.alive():
            return PlainTextResponse("ok\n")
        return PlainTextResponse("poll loop stuck\n", status_code=503)

    async def readyz(request: Request) -> JSONResponse:
        ok, why = health.ready()
        body = {"ready": ok, "reason": why, "role": health.role, "config": health.config}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics_text(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_text),
            *(board_routes(board) if board is not None else ()),
            *extra,
        ]
    )


def board_routes(board: StatusBoard) -> list[Route]:
    """``GET /`` (HTML) and ``GET /api/v1/jobs`` (JSON): read-only, no script."""
    from ftwatch.ops.status_page import CONTENT_SECURITY_POLICY, render_page  # noqa: PLC0415

    headers = {
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(render_page(board, board.clock.now_ns()), headers=headers)

    async def jobs(request: Request) -> JSONResponse:
        return JSONResponse(board.to_json(), headers=headers)

    return [Route("/", page, methods=["GET"]), Route("/api/v1/jobs", jobs, methods=["GET"])]


async def serve_endpoints(group: anyio.abc.TaskGroup, listen: str, app: Starlette) -> None:
    """Serve the endpoints on ``listen`` (``host:port``) in ``group`` until it ends;
    a port that cannot be had is a :class:`~ftwatch.errors.ConfigError` naming the fix."""
    host, _, port = listen.rpartition(":")
    raise_open_files_limit()
    quiet_accept_errors()
    try:
        sock = bind_socket(host, int(port))
    except OSError as exc:
        raise ConfigError(
            f'cannot listen on {listen}: {exc.strerror}; change [http] listen (or "" to turn it off)'
        ) from None
    bound = sock.getsockname()[1]
    await group.start(serve_asgi, app, sock)
    log.info("http.listening", address=f"{host}:{bound}")
