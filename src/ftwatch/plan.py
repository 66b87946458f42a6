"""Which models a cycle reads: a pure function of what is known and what the list says.

No I/O, no clock, no anyio (as h11 holds no socket): the poller hands in the state,
the listing and the time, and gets back which histories to read, which models take
their baseline from the list, and where the reconcile goes on next time. The rules:

- **Route.** Every model of the key, or ``mode = list``/``events``: read the list.
  One configured model: ask it alone. Several: whichever took fewer requests (the
  list until its cost is known).
- **Lazy baseline.** A model never seen, on a cycle whose unknown models are
  history (:func:`unknown_are_history`), takes its baseline from the list without
  a read, unless it moved inside the catch-up window. A history source needs the
  list's time for that; a snapshot source does not.
- **What moved.** A history source's model is read when the list's status or time
  differ from those last committed; a snapshot source's when its status differs
  from the cursor's.
- **Reconcile.** Of the idle models (history sources), a window of
  ``floor(list requests * share)`` (at least one) is re-read, round robin over the sorted
  ids, within what the cycle's budget leaves after the list and the moved ones.
- **Progress.** A source whose running jobs tell their progress only in a read of
  their own: each running job not read already, one request, round robin over the
  sorted ids within what the budget leaves last.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ftwatch.model import ModelInfo
from ftwatch.state import ModelState

__all__ = [
    "CyclePlan",
    "Listing",
    "PlanConfig",
    "PollMode",
    "ReadPlan",
    "choose_route",
    "newer_than",
    "plan_reads",
    "progress_reads",
    "reconcile_window",
    "unknown_are_history",
]


class PollMode(enum.StrEnum):
    """How changes are found (``[poll] mode``)."""

    AUTO = "auto"  # the cheaper of the two below
    LIST = "list"  # read the model list, ask only the models that moved
    EVENTS = "events"  # every model's events every cycle, as a naive loop would


class CyclePlan(enum.StrEnum):
    """How one cycle finds what changed (decided by :func:`choose_route`)."""

    LIST = "list"  # read the model list, then the events of what moved
    PER_MODEL = "per-model"  # ask each configured model for its newest events


@dataclass(frozen=True, slots=True)
class PlanConfig:
    """What the planner needs of ``[poll]`` and the source."""

    #: Configured ids (empty: every model of the key).
    models: tuple[str, ...] = ()
    mode: PollMode = PollMode.AUTO
    #: Extra reads per cycle for the reconcile, as a share of the list's requests.
    reconcile_share: float = 0.1
    #: Requests a cycle may spend on listing and reconciling together (``None``: no cap).
    budget_per_cycle: int | None = None
    lookback_ns: int = 300 * 10**9
    clock_skew_ns: int = 2 * 10**9


@dataclass(frozen=True, slots=True)
class Listing:
    """What a cycle's list said: its models, the requests it took, and whether their
    statuses are the jobs' own (a snapshot source) or a hint that a history moved."""

    models: Sequence[ModelInfo]
    requests: int = 1
    snapshot: bool = False


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """The histories to read (id, read back to; ``None``: all of it), the models
    whose baseline is the list, and where the next reconcile window starts."""

    reads: tuple[tuple[str, int | None], ...]
    lazy: frozenset[str]
    reconcile_next: int


def choose_route(config: PlanConfig, list_cost: int | None) -> CyclePlan:
    """List or per model: the list when watching everything or when asked to; for
    configured models, whichever takes fewer requests (unknown until the first
    listing, which tries it)."""
    if not config.models or config.mode in (PollMode.LIST, PollMode.EVENTS):
        return CyclePlan.LIST
    if len(config.models) == 1:
        return CyclePlan.PER_MODEL
    listing_is_cheaper = list_cost is None or list_cost < len(config.models)
    return CyclePlan.LIST if listing_is_cheaper else CyclePlan.PER_MODEL


def unknown_are_history(*, fresh: bool, configured: bool, committed_scope: str | None) -> bool:
    """Whether a model never seen before is history (True) or a new job.

    A first start, configured models, and a watch that just widened to all models
    (by a config change) take what they find as baseline; only a model that appears
    while all models were already watched is a new job.
    """
    if fresh or configured:
        return True
    return committed_scope not in (None, "all")


def newer_than(old: ModelState | None) -> int | None:
    """How far back a history source's model must be read: down to its cursor's
    horizon (late events included), or all of it for a model never read (a lazy
    baseline too)."""
    if old is None or old.cursor.lazy:
        return None
    return old.cursor.horizon_ns


def reconcile_window(
    idle: Sequence[str], config: PlanConfig, list_requests: int, already: int, start: int
) -> tuple[list[str], int]:
    """The next few idle models, round robin from ``start``, and the next start."""
    if not idle:
        return [], start
    size = max(1, math.floor(list_requests * config.reconcile_share)) if config.reconcile_share > 0 else 0
    if config.budget_per_cycle is not None:
        size = min(size, max(0, config.budget_per_cycle - list_requests - already))
    size = min(size, len(idle))
    first = start % len(idle)
    return [idle[(first + i) % len(idle)] for i in range(size)], first + size


def _recent(info: ModelInfo, catch_up_from: int | None, clock_skew_ns: int) -> bool:
    """Whether a model moved inside the catch-up window (one without a time may have)."""
    if catch_up_from is None:
        return False
    at = info.updated_at_ns
    return at is None or at >= catch_up_from - clock_skew_ns


def plan_reads(
    config: PlanConfig,
    state: Mapping[str, ModelState],
    listing: Listing,
    *,
    baseline: bool,
    catch_up_from: int | None,
    reconcile_next: int = 0,
) -> ReadPlan:
    """Which of the listed models to read this cycle (see the module's rules)."""
    if listing.snapshot:
        return _plan_snapshot(config, state, listing.models, baseline=baseline, catch_up_from=catch_up_from)
    reads: list[tuple[str, int | None]] = []
    lazy: set[str] = set()
    idle: list[str] = []
    for info in listing.models:
        old = state.get(info.id)
        if config.mode is PollMode.EVENTS:  # the naive way, on request: every history
            reads.append((info.id, newer_than(old)))
        elif old is None:
            if baseline and info.updated_at_ns is not None and not _recent(info, catch_up_from, config.clock_skew_ns):
                lazy.add(info.id)
            else:
                reads.append((info.id, None))
        elif old.list_status != info.status or old.list_updated != info.updated_at:
            reads.append((info.id, newer_than(old)))
        else:
            idle.append(info.id)
    window, after = reconcile_window(sorted(idle), config, listing.requests, len(reads), reconcile_next)
    reads.extend((model_id, newer_than(state[model_id])) for model_id in sorted(window))
    return ReadPlan(tuple(reads), frozenset(lazy), after if idle else reconcile_next)


def _plan_snapshot(
    config: PlanConfig,
    state: Mapping[str, ModelState],
    listed: Sequence[ModelInfo],
    *,
    baseline: bool,
    catch_up_from: int | None,
) -> ReadPlan:
    """A snapshot source: the history of only those whose status moved."""
    reads: list[tuple[str, int | None]] = []
    lazy: set[str] = set()
    for info in listed:
        old = state.get(info.id)
        if old is None:
            if baseline and not _recent(info, catch_up_from, config.clock_skew_ns):
                lazy.add(info.id)
            else:
                reads.append((info.id, None))
        elif old.cursor.last_status != info.status:
            at = old.cursor.at_ns
            reads.append((info.id, None if at is None else at - config.lookback_ns))
    return ReadPlan(tuple(reads), frozenset(lazy), 0)


def progress_reads(
    running: Sequence[str], plan: ReadPlan, config: PlanConfig, list_requests: int, start: int
) -> tuple[list[str], int]:
    """The running jobs whose progress to read this cycle (those whose history is
    read anyway tell it there), and where the next window starts."""
    already = {model_id for model_id, _ in plan.reads}
    wanted = sorted(set(running) - already)
    if not wanted:
        return [], start
    size = len(wanted)
    if config.budget_per_cycle is not None:
        size = min(size, max(0, config.budget_per_cycle - list_requests - len(plan.reads)))
    first = start % len(wanted)
    return [wanted[(first + i) % len(wanted)] for i in range(size)], first + size
