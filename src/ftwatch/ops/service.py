"""What the service manager and the leadership gauges are told: after every cycle
a ``STATUS=`` line and the role, and ``WATCHDOG=1`` while the loop is alive.

``READY=1`` and ``STOPPING=1`` are the daemon's to send: they mark its own steps.
"""

from __future__ import annotations

from typing import assert_never

import anyio

from ftwatch.cycle import CycleReport, Failed, FailedAt, Polled, Standby
from ftwatch.leadership import Leadership
from ftwatch.ops.health import Health
from ftwatch.ops.metrics import Metrics
from ftwatch.ops.sdnotify import SystemdNotifier
from ftwatch.wording import plural

__all__ = ["ServiceStatus", "status_line"]


def status_line(report: CycleReport) -> str:
    """systemd's ``STATUS=`` after a cycle: what is watched, or what is wrong."""
    match report:
        case Standby():
            return "standby: another replica polls"
        case Failed(error=error, failed_at=failed_at):
            what = "the state cannot be written" if failed_at is FailedAt.STORE else "the API cannot be polled"
            return f"{what}: {error[:200]}"
        case Polled(findings=found):
            failing = f"; {len(found.failed)} failing" if found.failed else ""
            return f"watching {plural(found.models, 'model')}{failing}; last poll ok"
        case unexpected:
            assert_never(unexpected)


class ServiceStatus:
    """Subscribes to the poll loop's reports (see the module)."""

    def __init__(
        self, systemd: SystemdNotifier, metrics: Metrics, health: Health, leadership: Leadership | None
    ) -> None:
        self.systemd = systemd
        self.metrics = metrics
        self.health = health
        self.leadership = leadership
        if leadership is None:
            metrics.leader.set(1)  # the one process of its file polls: "no leader" never fires

    def cycle_done(self, report: CycleReport) -> None:
        if self.leadership is not None:
            leading = self.leadership.leading
            self.metrics.leader.set(1 if leading else 0)
            if self.leadership.term is not None:
                self.metrics.leader_term.set(self.leadership.term)
            self.health.role = "leader" if leading else "standby"
        self.systemd.notify(f"STATUS={status_line(report)}")

    async def watchdog(self, every_s: float) -> None:
        """Ping only while the loop's heartbeat is fresh: a stuck loop stops the pings
        and systemd restarts the service."""
        while True:
            if self.health.alive():
                self.systemd.notify("WATCHDOG=1")
            await anyio.sleep(every_s)
