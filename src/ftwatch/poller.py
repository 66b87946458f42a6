"""One poll cycle of one source: list → plan → read → diff → stall → commit.

A thin shell around pure parts: :mod:`ftwatch.plan` decides what to read (the
list, or each configured model; which histories), :class:`~ftwatch.reads.Reader`
reads it, the source's kind picks the differ (:func:`ftwatch.diff.diff_histories`
or :func:`ftwatch.snapshot.diff_snapshots`), :mod:`ftwatch.gone` and
:mod:`ftwatch.stall` add their marks, and the store commits the whole cycle in one
transaction.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import anyio
import structlog

from ftwatch.clock import SYSTEM_CLOCK, Clock
from ftwatch.cycle import CycleFindings
from ftwatch.diff import diff_histories
from ftwatch.gone import mark_gone
from ftwatch.model import Progress, Transition
from ftwatch.outbox import Route
from ftwatch.plan import CyclePlan, Listing, PlanConfig, choose_route, plan_reads, unknown_are_history
from ftwatch.progress import RunningJobs
from ftwatch.reads import Reader
from ftwatch.snapshot import diff_snapshots
from ftwatch.sources.protocol import Source, SourceKind
from ftwatch.stall import stall_alerts
from ftwatch.state import CycleDiff, DiffContext, Fetched, ModelState, ReadWindow, SourceIdentity
from ftwatch.store.base import CursorStore, Lease, for_source

__all__ = ["Poller", "PollerConfig"]

log = structlog.get_logger("ftwatch.poller")

#: What each kind of undated events means (see :func:`ftwatch.diff.diff_histories`).
_UNDATED_NOTES = {"baseline.undated": "taken as history", "event.undated": "no usable created_at"}

#: How long a status may last before a stall alert: (status, state) -> seconds, or
#: ``None`` for no alert.
StallThreshold = Callable[[str | None, str], float | None]


@dataclass(frozen=True, slots=True)
class PollerConfig:
    """One source's polling, as the wiring builds it from ``[poll]`` and ``[stall]``."""

    plan: PlanConfig = field(default_factory=PlanConfig)
    #: API requests in flight at once.
    concurrency: int = 8
    #: A start on empty state reports what happened this long before it (``[poll] catch_up``).
    catch_up_ns: int = 0
    #: ``None``: no stall alerts (only the daemon's poller sends them).
    stall_after: StallThreshold | None = None


class Poller:
    """Runs cycles of one source against one store (see the module)."""

    def __init__(
        self,
        source: Source,
        store: CursorStore,
        identity: SourceIdentity,
        config: PollerConfig,
        *,
        routes: Callable[[], Sequence[Route]] = lambda: (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.source = source
        self.cursors = for_source(store, identity.namespace)
        self.identity = identity
        self.config = config
        self.routes = routes
        self.clock = clock
        self.reader = Reader(source, config.concurrency)
        self._differ = diff_snapshots if source.kind is SourceKind.SNAPSHOT else diff_histories
        self._state: dict[str, ModelState] | None = None
        #: How far the jobs are whose progress moved since their row was written:
        #: apart from the rows, so a job that reports every cycle costs a dict entry,
        #: not a new row (``bench/progress.py``).
        self._moved: dict[str, Progress] = {}
        self._fresh = True
        self._missing: set[str] = set()
        self._failing: dict[str, str] = {}
        self._committed_scope: str | None = None
        self._reconcile_next = 0  # round-robin position over the sorted idle ids

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def models(self) -> list[str]:
        return list(self.config.plan.models)

    @property
    def budget_per_cycle(self) -> int | None:
        return self.config.plan.budget_per_cycle

    def reconfigure(self, config: PollerConfig) -> None:
        """Take a reload's configuration now (between cycles)."""
        self.config = config
        self.reader.concurrency = config.concurrency

    def known(self, model_id: str) -> ModelState | None:
        """What the last committed cycle knows of one model."""
        return (self._state or {}).get(model_id)

    async def _load(self) -> dict[str, ModelState]:
        if self._state is None:
            self._state = await anyio.to_thread.run_sync(self.cursors.load)
            self._fresh = await anyio.to_thread.run_sync(self.cursors.is_fresh)
            self._committed_scope = await anyio.to_thread.run_sync(self.cursors.scope)
        return self._state

    async def cycle(self, lease: Lease | None = None) -> CycleFindings:
        """Poll once and commit what is new (renewing ``lease`` in the same transaction).
        Raises the source's and the store's errors."""
        state = await self._load()
        fresh, plan = self._fresh, self.config.plan
        baseline = unknown_are_history(fresh=fresh, configured=bool(plan.models), committed_scope=self._committed_scope)
        route = choose_route(plan, self.reader.list_cost)
        failed: dict[str, str] = {}
        # A start on empty state with [poll] catch_up: what happened in that window is
        # reported, not taken as baseline (a rescheduled sidecar loses nothing recent).
        catch_up = self.config.catch_up_ns
        catch_up_from = self.clock.now_ns() - catch_up if fresh and catch_up > 0 else None
        fetched, not_found = await self._fetch(state, route, failed, baseline=baseline, catch_up_from=catch_up_from)
        self._report(not_found, failed)
        window = ReadWindow(
            baseline=baseline,
            detected_at_ns=self.clock.now_ns(),
            catch_up_from=catch_up_from,
            lookback_ns=plan.lookback_ns,
            clock_skew_ns=plan.clock_skew_ns,
        )
        context = DiffContext(self.identity, self.source.vocabulary, window, progress=self._moved)
        found = self._differ(state, fetched, context)
        listed = route is CyclePlan.LIST
        changed, transitions = self._outcome(state, found, fetched.keys(), context, listed=listed)
        self._with_progress(changed, found)
        await self._commit(state, changed, transitions, lease)
        self._moved.update(found.progressed)
        for model_id in changed:  # written with its row
            self._moved.pop(model_id, None)
        return CycleFindings(
            transitions=transitions,
            models=len(fetched),
            events_read=found.events_read,
            baseline=fresh,
            not_found=not_found,
            statuses={model_id: item.info for model_id, item in fetched.items()},
            plan=route,
            failed=failed,
            sources={self.name: True},
            origin=dict.fromkeys(fetched, self.name),
            progress={self.name: RunningJobs(state, fetched.keys(), self.source.vocabulary, self._moved)},
        )

    async def _fetch(
        self,
        state: dict[str, ModelState],
        route: CyclePlan,
        failed: dict[str, str],
        *,
        baseline: bool,
        catch_up_from: int | None,
    ) -> tuple[dict[str, Fetched], list[str]]:
        """What this cycle reads: the list (or each configured model), planned."""
        snapshot = self.source.kind is SourceKind.SNAPSHOT
        models = self.models
        if route is CyclePlan.PER_MODEL and not snapshot:
            return await self.reader.read_each(models, state, failed)
        read_list = route is CyclePlan.LIST
        listed, not_found = await (self.reader.list_wanted if read_list else self.reader.get_each)(models, failed)
        listing = Listing(listed, requests=self.reader.list_cost or 0, snapshot=snapshot)
        plan = plan_reads(
            self.config.plan,
            state,
            listing,
            baseline=baseline,
            catch_up_from=catch_up_from,
            reconcile_next=self._reconcile_next,
        )
        self._reconcile_next = plan.reconcile_next
        fetched = await self.reader.read(listed, plan, failed)
        await self.reader.read_progress(fetched, plan, self.config.plan, listing.requests)
        return fetched, not_found

    def _outcome(
        self, state: dict[str, ModelState], found: CycleDiff, seen: Iterable[str], context: DiffContext, *, listed: bool
    ) -> tuple[dict[str, ModelState], list[Transition]]:
        """The rows and transitions to commit: in this source's words, oldest first,
        the gone marked (after a full listing), the stalls found."""
        for event, model_id, count in found.undated:
            log.warning(event, model_id=model_id, events=count, note=_UNDATED_NOTES[event])
        changed = found.changed
        if listed:
            marks = mark_gone(state, changed, self.reader.listed, self.models, context.window.detected_at_ns)
            changed = marks.changed
            for model_id in marks.gone:
                log.info("model.gone", model_id=model_id, source=self.name, note="no longer in the list; kept")
            for model_id in marks.back:
                log.info("model.back", model_id=model_id, source=self.name)
        # Oldest first across models too; the sort is stable, so per-model order holds.
        transitions = sorted(map(self._stamped, found.transitions), key=lambda t: t.occurred_at)
        if (threshold := self.config.stall_after) is not None:
            alerts = stall_alerts(state, changed, seen, threshold, context)
            for alert in alerts:
                log.warning("model.stalled", model_id=alert.model_id, status=alert.status, since=alert.since)
            transitions += alerts
        return changed, transitions

    def _with_progress(self, changed: dict[str, ModelState], found: CycleDiff) -> None:
        """A row written for another reason (a stall or gone mark) takes the progress
        kept apart from it; the diff's own rows have it already."""
        for model_id, row in changed.items():
            if model_id in found.changed:
                continue
            moved = found.progressed.get(model_id) or self._moved.get(model_id)
            if moved is not None and moved is not row.progress:
                changed[model_id] = row.with_progress(moved)

    async def _commit(
        self,
        state: dict[str, ModelState],
        changed: dict[str, ModelState],
        transitions: list[Transition],
        lease: Lease | None,
    ) -> None:
        """The cycle's rows and transitions in one transaction (renewing ``lease``)."""
        scope = "all" if not self.models else json.dumps(sorted(self.models))
        routes, now = list(self.routes()), self.clock.now()
        commit = functools.partial(self.cursors.commit, scope=scope, lease=lease)
        await anyio.to_thread.run_sync(commit, changed, transitions, routes, now)
        state.update(changed)
        self._fresh = False
        self._committed_scope = scope

    def _stamped(self, transition: Transition) -> Transition:
        """A transition in this source's words: its name, its provider, its state."""
        state = self.source.vocabulary.state_of(transition.status)
        return transition.in_words_of(self.identity.provider, self.name, state)

    def _report(self, not_found: list[str], failed: dict[str, str]) -> None:
        """Once per streak: a model missing, one that starts failing, one that recovers."""
        for model_id in not_found:
            if model_id not in self._missing:
                log.warning("model.not_found", model_id=model_id, fix="check the id in poll.models")
        self._missing = set(not_found)
        for model_id, error in failed.items():
            if model_id not in self._failing:
                log.warning("model.failed", model_id=model_id, error=error, note="the others go on; retried next cycle")
        for model_id in self._failing.keys() - failed.keys():
            log.info("model.recovered", model_id=model_id)
        self._failing = dict(failed)
