"""What the status page shows: every watched job, the latest transitions, the
outbox's health per notifier. Filled from the poll loop's reports and the
housekeeping's counts, read by the page; plain data, no I/O.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, assert_never

from ftwatch.clock import SYSTEM_CLOCK, Clock
from ftwatch.cycle import CycleReport, Failed, Polled, Standby
from ftwatch.model import Progress, Transition, format_timestamp, parse_timestamp
from ftwatch.statuses import Vocabulary, builtin_state

__all__ = ["JobRow", "StatusBoard"]

#: The latest transitions the page lists.
RECENT = 20


@dataclass(slots=True)
class JobRow:
    """One watched job as the page shows it."""

    source: str
    provider: str
    model_id: str
    name: str | None
    status: str
    state: str
    #: When it entered this status, as far as known (ns since the epoch).
    since_ns: int | None
    progress: Progress | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "provider": self.provider,
            "model_id": self.model_id,
            "name": self.name,
            "status": self.status,
            "state": self.state,
            "since": format_timestamp(self.since_ns, digits=0) if self.since_ns is not None else None,
            "progress": self.progress.to_body() if self.progress is not None else None,
        }


@dataclass(slots=True)
class StatusBoard:
    """The page's data, kept current by :meth:`cycle_done` and :meth:`outbox`."""

    #: Each source's provider and words (a plug-in's are its own).
    sources: dict[str, tuple[str, Vocabulary | None]] = field(default_factory=dict)
    rows: dict[tuple[str, str], JobRow] = field(default_factory=dict)
    recent: collections.deque[Transition] = field(default_factory=lambda: collections.deque(maxlen=RECENT))
    #: Per notifier: deliveries pending and dead.
    deliveries: dict[str, tuple[int, int]] = field(default_factory=dict)
    polled_at_ns: int | None = None
    standby: bool = False
    error: str | None = None
    clock: Clock = SYSTEM_CLOCK
    #: The last cycle's running jobs per source (:class:`~ftwatch.progress.RunningJobs`).
    running: Mapping[str, Mapping[str, Progress]] = field(default_factory=dict)

    def cycle_done(self, report: CycleReport) -> None:
        match report:
            case Standby():
                self.standby = True
            case Failed(error=error):
                self.error = error
            case Polled(findings=findings):
                self.standby, self.error = False, None
                self.polled_at_ns = self.clock.now_ns()
                self._found(findings.statuses, findings.origin)
                self.running = findings.progress
                for transition in findings.transitions:
                    self._moved(transition)
            case unexpected:
                assert_never(unexpected)

    def _found(self, statuses: dict[str, Any], origin: dict[str, str]) -> None:
        for model_id, info in statuses.items():
            source = origin.get(model_id, "")
            provider, words = self.sources.get(source, (source, None))
            key = (source, model_id)
            row = self.rows.get(key)
            if row is None or row.status != info.status:
                # Since when the list says, else since ftwatch first saw it so.
                since = (info.updated_at_ns if row is None else None) or self.polled_at_ns
                row = JobRow(source, provider, model_id, info.name, info.status, "", since)
                self.rows[key] = row
            row.name = info.name
            row.state = words.state_of(info.status) if words is not None else builtin_state(info.status, provider)

    def _moved(self, transition: Transition) -> None:
        self.recent.appendleft(transition)
        if transition.stalled:
            return
        row = self.rows.get((transition.source, transition.model_id))
        if row is not None and row.status == transition.status:
            with contextlib.suppress(ValueError):
                row.since_ns = parse_timestamp(transition.occurred_at)
            row.state = transition.state

    def outbox(self, pending: dict[str, int], dead: dict[str, int], configured: set[str]) -> None:
        """The deliveries each configured notifier has waiting and given up on."""
        self.deliveries = {key: (pending.get(key, 0), dead.get(key, 0)) for key in sorted(configured)}

    def jobs(self) -> list[JobRow]:
        # How far each runs is looked up now: the last cycle's running jobs are
        # worked out when first asked, and a page is asked far less than a cycle runs.
        for row in self.rows.values():
            row.progress = self.running.get(row.source, {}).get(row.model_id)
        return sorted(self.rows.values(), key=lambda r: (r.source, (r.name or "").lower(), r.model_id))

    def to_json(self) -> dict[str, Any]:
        """``GET /api/v1/jobs``: the page's content."""
        return {
            "polled_at": format_timestamp(self.polled_at_ns, digits=3) if self.polled_at_ns else None,
            "standby": self.standby,
            "error": self.error,
            "jobs": [row.to_json() for row in self.jobs()],
            "transitions": [t.to_payload() for t in self.recent],
            "outbox": {key: {"pending": p, "dead": d} for key, (p, d) in self.deliveries.items()},
        }
