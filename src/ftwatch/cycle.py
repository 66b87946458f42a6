"""What one poll cycle found, as handed to the poll loop and its subscribers
(metrics, health, sd_notify, the dispatcher, the live view). Frozen data only."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ftwatch.model import ModelInfo, Transition
from ftwatch.plan import CyclePlan

__all__ = ["CycleReport", "CycleResult", "FailedAt"]


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one successful cycle found."""

    transitions: list[Transition]
    models: int
    events_read: int
    baseline: bool
    not_found: list[str] = field(default_factory=list)
    #: Every model's current status as the cycle saw it (for live views).
    statuses: dict[str, ModelInfo] = field(default_factory=dict)
    plan: CyclePlan = CyclePlan.LIST
    #: Models whose read failed this cycle (id -> why): retried next cycle, while
    #: the others were committed.
    failed: dict[str, str] = field(default_factory=dict)
    #: Each source of the cycle, and whether it was polled (``ftwatch_source_up``).
    sources: dict[str, bool] = field(default_factory=dict)


class FailedAt(enum.StrEnum):
    """Where a failed cycle broke."""

    API = "api"
    STORE = "store"


@dataclass(frozen=True, slots=True)
class CycleReport:
    """One cycle as the poll loop saw it: what its subscribers (metrics, health,
    sd_notify, the dispatcher, the live view) are told."""

    #: ``None``: the cycle failed (nothing of it was committed), or this process is a
    #: standby that did not poll.
    result: CycleResult | None
    seconds: float
    #: API requests the cycle made.
    requests: int
    error: str | None = None
    failed_at: FailedAt | None = None
    #: Another process leads the polling: this one waits, healthy (several replicas).
    standby: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None or self.standby
