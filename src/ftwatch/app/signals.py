"""One signal handling for every command: SIGTERM/SIGINT stop, SIGHUP reloads."""

from __future__ import annotations

import signal
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

__all__ = ["handle_signals"]

log = structlog.get_logger("ftwatch.signals")


async def handle_signals(
    stop: Callable[[], Coroutine[Any, Any, None]],
    reload: Callable[[], Coroutine[Any, Any, None]] | None = None,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``stop`` on the first SIGTERM or SIGINT (it cancels the caller's task group
    once its bounded cleanup is done), ``reload`` on each SIGHUP.

    The handlers are in place when ``task_status.started()`` returns, so a caller that
    announces readiness after starting this cannot lose an early SIGTERM. Later stop
    signals are received and ignored: a second SIGTERM during the grace period must
    not kill the process before the outbox is saved.
    """
    wanted = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGHUP] if reload is not None else [])
    stopping = False
    async with anyio.create_task_group() as group:
        with anyio.open_signal_receiver(*wanted) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP and reload is not None:
                    group.start_soon(reload)
                    continue
                log.info("daemon.signal", signal=signal.Signals(signum).name, stopping=True)
                if not stopping:
                    stopping = True
                    group.start_soon(stop)
