"""Serve an ASGI app inside the caller's task group (the health endpoints, the simulator).

Hypercorn rather than uvicorn: it takes a shutdown trigger instead of installing
signal handlers of its own, so the daemon keeps SIGTERM to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import resource
import socket
import time
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus
from hypercorn.asyncio import serve
from hypercorn.config import Config

__all__ = ["bind_socket", "quiet_accept_errors", "raise_open_files_limit", "serve_asgi"]

log = structlog.get_logger("ftwatch.http")

#: How often a streak of failing accepts is logged again.
_ACCEPT_LOG_EVERY_S = 60.0


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one (systemd's LimitNOFILE, the
    container's ulimit): a flood of connections must not starve the API client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def quiet_accept_errors() -> None:
    """asyncio logs a failed ``accept()`` (out of file descriptors) every time it
    retries, with a traceback: one warning a minute instead, with the count."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    last_logged = -math.inf
    failed = 0

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last_logged, failed
        if "accept" not in str(context.get("message", "")):
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        failed += 1
        now = time.monotonic()
        if now - last_logged >= _ACCEPT_LOG_EVERY_S:
            error = context.get("exception")
            log.warning(
                "http.accept_failed",
                error=str(error) if error else str(context.get("message")),
                times=failed,
                fix="raise LimitNOFILE (systemd) or the container's open files limit; put a proxy in front",
            )
            last_logged, failed = now, 0

    loop.set_exception_handler(handler)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it from ``getsockname``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


async def serve_asgi(
    app: Any,
    sock: socket.socket,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on an already bound socket until cancelled."""
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns the descriptor from here on
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 0.5
    # The port may face the internet (pushes): a connection that sends nothing, or
    # headers a byte at a time, is closed soon; a body is bounded by its route.
    config.keep_alive_timeout = 5.0
    config.read_timeout = 10
    config.h11_max_incomplete_size = 16 * 1024
    shutdown = anyio.Event()

    async def server() -> None:
        # Hypercorn must not be cancelled mid-flight (its shutdown path breaks), so it
        # runs shielded and stops through its trigger, which also keeps it from
        # installing signal handlers of its own. graceful_timeout bounds the wait.
        with anyio.CancelScope(shield=True):
            await serve(app, config, shutdown_trigger=shutdown.wait)

    async with anyio.create_task_group() as group:
        group.start_soon(server)
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            shutdown.set()
