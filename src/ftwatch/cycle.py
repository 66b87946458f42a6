"""What one poll cycle found, as handed to the poll loop and its subscribers
(metrics, health, sd_notify, the dispatcher, the live view). Frozen data only."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from ftwatch.model import ModelInfo, Progress, Transition
from ftwatch.plan import CyclePlan

__all__ = ["CycleFindings", "CycleReport", "Failed", "FailedAt", "Polled", "Standby"]


@dataclass(frozen=True, slots=True)
class CycleFindings:
    """What one committed cycle found."""

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
    #: The source each model of ``statuses`` came from (its name).
    origin: dict[str, str] = field(default_factory=dict)
    #: Each polled source's running jobs and how far each is, where the provider
    #: tells (``ftwatch_job_progress_ratio``, the live view): source -> id -> progress,
    #: each worked out when first read (:class:`~ftwatch.progress.RunningJobs`).
    progress: dict[str, Mapping[str, Progress]] = field(default_factory=dict)


class FailedAt(enum.StrEnum):
    """Where a failed cycle broke."""

    API = "api"
    STORE = "store"


@dataclass(frozen=True, slots=True)
class Polled:
    """The cycle ran and was committed (some models, or sources, may have failed)."""

    findings: CycleFindings
    seconds: float
    #: API requests the cycle made.
    requests: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The cycle broke (``failed_at``): nothing of it was committed."""

    error: str
    failed_at: FailedAt
    seconds: float
    requests: int


@dataclass(frozen=True, slots=True)
class Standby:
    """Another process leads the polling: this one waits, healthy (several replicas)."""

    seconds: float = 0.0
    requests: int = 0


#: One cycle as the poll loop saw it: what its subscribers (metrics, health,
#: sd_notify, the dispatcher, the live view) are told; matched with ``assert_never``.
CycleReport = Polled | Failed | Standby
