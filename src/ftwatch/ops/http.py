"""What a daemon's port needs beyond serving (:mod:`ftwatch.serving`): enough open
files, and a quiet word when ``accept()`` fails for want of them."""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import time
from typing import Any

import structlog

__all__ = ["quiet_accept_errors", "raise_open_files_limit"]

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
    retries, with a traceback: one warning a minute instead, with the count. A retry
    that fires after the port was closed at shutdown is said at debug level only."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    last_logged = -math.inf
    failed = 0

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last_logged, failed
        message = str(context.get("message", ""))
        if "_start_serving" in message and isinstance(context.get("exception"), ValueError):
            # The retry asyncio schedules after a failed accept, firing once the port
            # was closed (a shutdown inside the back-off): nothing is left to serve.
            log.debug("http.accept_retry_after_close")
            return
        if "accept" not in message:
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
