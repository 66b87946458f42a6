"""What watches the daemon from outside: built before anything else, so the health
server can serve them while the state database is still down."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ftwatch import __version__
from ftwatch.clock import SYSTEM_CLOCK, Clock
from ftwatch.ops.board import StatusBoard
from ftwatch.ops.health import Health
from ftwatch.ops.metrics import Metrics
from ftwatch.ops.sdnotify import SystemdNotifier

__all__ = ["Observers"]


@dataclasses.dataclass(frozen=True, slots=True)
class Observers:
    """What watches the daemon from outside, built before anything else (the health
    server serves them while the state database is still down): the metrics, the
    health, the service manager, and the one wall clock of every part."""

    metrics: Metrics
    health: Health
    systemd: SystemdNotifier
    clock: Clock
    #: What the status page shows (``[http] ui``).
    board: StatusBoard

    @classmethod
    def of(cls, interval_s: float, environ: Mapping[str, str], clock: Clock = SYSTEM_CLOCK) -> Observers:
        metrics = Metrics(__version__, clock=clock)
        metrics.poll_interval.set(interval_s)
        board = StatusBoard(clock=clock)
        return cls(metrics, Health(interval_s), SystemdNotifier(environ), clock, board)
