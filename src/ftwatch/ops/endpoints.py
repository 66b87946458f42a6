"""The daemon's HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics``.

Liveness says only whether the loop makes progress, never whether the API is up:
restarting ftwatch cannot fix a provider's API. Readiness says whether polling works.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ftwatch.ops.health import Health
from ftwatch.ops.metrics import Metrics

__all__ = ["health_app"]


def health_app(health: Health, metrics: Metrics, extra: Sequence[Route] = ()) -> Starlette:
    """The endpoints, and ``extra`` routes (the webhooks a source takes)."""

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
            *extra,
        ]
    )
