"""Serve an ASGI app on a bound socket inside the caller's task group (the daemon's
port, the simulated APIs).

Hypercorn rather than uvicorn: it takes a shutdown trigger instead of installing
signal handlers of its own, so the daemon keeps SIGTERM to itself. Knows nothing of
ftwatch: the simulators use it without depending on the daemon.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import anyio
from anyio.abc import TaskStatus
from hypercorn.asyncio import serve
from hypercorn.config import Config

__all__ = ["bind_socket", "serve_asgi"]


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
