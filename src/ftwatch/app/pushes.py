"""What a provider's push (a signed webhook saying a job ended) does: poll that
source soon rather than at the interval's end.

A replica that does not lead hands the push to the leader through the shared store
(:class:`~ftwatch.store.base.PollRequests`); the leader polls that source within
about a second. A push for a job the source does not watch polls nothing.
"""

from __future__ import annotations

import anyio
import structlog

from ftwatch.app.wiring import Runtime
from ftwatch.errors import StoreError
from ftwatch.ops.metrics import Metrics
from ftwatch.store.base import PollRequests

__all__ = ["PushIntake"]

log = structlog.get_logger("ftwatch.daemon")


class PushIntake:
    """The push endpoint's callback: ``await intake(source, job_id)``; ``False`` when
    the source does not watch that job."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        #: The daemon's parts, once they exist (a push before that is moot: the first
        #: cycle reads everything anyway).
        self.runtime: Runtime | None = None

    async def __call__(self, source: str, job_id: str) -> bool:
        runtime = self.runtime
        if runtime is None:
            return True
        poller = runtime.group.poller(source)
        if poller is not None and poller.models and job_id not in poller.models:
            return False
        leadership, store = runtime.leadership, runtime.store
        if leadership is not None and not leadership.leading and isinstance(store, PollRequests):
            try:
                await anyio.to_thread.run_sync(store.ask_poll, source)
            except StoreError as exc:
                self.metrics.store_error("ask_poll")
                log.warning("push.relay_failed", source=source, error=str(exc), note="the leader polls at its interval")
        else:
            runtime.loop.poll_soon(source)
        return True
