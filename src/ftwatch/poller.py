"""One poll cycle: source -> diff -> store. Knows no notifier, only their routes.

Two ways to find what changed, whichever costs fewer requests:

- **list mode** (all models, or many configured ones): read the model list (a page
  of models per request) and ask for the events of only the models whose status or
  ``updated_at`` moved, the new ones, and a few others each cycle as a safety net
  (the reconcile, spread over the cycles). The first cycle takes its baseline from
  the list alone, without reading a single history.
- **per-model mode** (a few configured models): ask each for its newest events.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import anyio
import structlog

from ftwatch.diff import DEFAULT_CLOCK_SKEW_NS, DEFAULT_LOOKBACK_NS, Cursor, diff_events
from ftwatch.model import Event, ModelInfo, Transition, format_timestamp
from ftwatch.outbox import Route
from ftwatch.settings import PollMode, Settings, cycle_budget, source_specs
from ftwatch.snapshot import baseline_cursor, diff_snapshot
from ftwatch.sources.base import ModelNotFoundError, Source, SourceError
from ftwatch.stall import check_stall
from ftwatch.store.base import Lease, ModelState, Store, model_key, models_in

__all__ = ["CyclePlan", "CycleReport", "CycleResult", "FailedAt", "Poller"]

log = structlog.get_logger("ftwatch.poller")


class CyclePlan(enum.StrEnum):
    """How one cycle finds what changed (decided by :meth:`Poller.plan`)."""

    LIST = "list"  # read the model list, then the events of what moved
    PER_MODEL = "per-model"  # ask each configured model for its newest events


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


@dataclass(slots=True)
class _Fetched:
    info: ModelInfo
    events: list[Event] | None = None  # None: not read this cycle
    lazy_baseline: bool = False  # baseline from the list, no events read


class Poller:
    """Runs cycles against one source and one store.

    ``models`` empty means every model of the key. ``mode``: ``auto`` (the cheaper
    way), ``list`` or ``events`` (ask every model for its events each cycle, as a
    naive loop would: for APIs whose list cannot be trusted). ``reconcile_share``: extra event
    reads per cycle for the reconcile, as a share of the list requests (0.1: a tenth
    more). ``budget_per_cycle``: requests a cycle may spend at most on reconciling and
    listing together, so the reconcile never eats into the key's budget.
    """

    def __init__(
        self,
        source: Source,
        store: Store,
        *,
        models: Sequence[str] = (),
        routes: Callable[[], Sequence[Route]] = lambda: (),
        concurrency: int = 8,
        reconcile_share: float = 0.1,
        budget_per_cycle: int | None = None,
        mode: PollMode = PollMode.AUTO,
        lookback_ns: int = DEFAULT_LOOKBACK_NS,
        clock_skew_ns: int = DEFAULT_CLOCK_SKEW_NS,
        catch_up_ns: int = 0,
        stall_after: Callable[[str | None, str], float | None] | None = None,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        name: str = "cohere",
        namespace: str = "",
    ) -> None:
        self.source = source
        self.store = store
        #: The configured source's name (bodies' ``source``), its provider (``provider``),
        #: and whether its list is a status snapshot (OpenAI, Bedrock) or has events.
        self.name = name
        self.provider: str = getattr(source, "provider", "cohere")
        self.snapshot: bool = bool(getattr(source, "snapshot", False))
        #: Where its models live in a state several sources share ("" for the first
        #: Cohere source, whose rows predate sources).
        self.namespace = namespace
        self.models = list(dict.fromkeys(models))
        self.routes = routes
        self.reconcile_share = reconcile_share
        self.budget_per_cycle = budget_per_cycle
        self.mode = mode
        self.lookback_ns = lookback_ns
        self.clock_skew_ns = clock_skew_ns
        self.catch_up_ns = catch_up_ns
        #: Seconds a status may last before a stall alert (``None``: no alerts).
        self.stall_after = stall_after
        self._limit = anyio.CapacityLimiter(concurrency)
        self._clock_ns = wall_clock_ns
        self._state: dict[str, ModelState] | None = None
        self._fresh = True
        self._missing: set[str] = set()
        self._failing: dict[str, str] = {}
        self._committed_scope: str | None = None
        self._reconcile_next = 0  # round-robin position over the sorted model ids
        self._list_cost: int | None = None  # requests the last full listing took
        self._listed: set[str] | None = None  # ids this cycle's listing showed (None: not listed)

    @property
    def concurrency(self) -> int:
        return int(self._limit.total_tokens)

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self._limit.total_tokens = value

    def reconfigure(self, settings: Settings) -> set[str]:
        """Take a reload's ``[poll]`` section now (between cycles); returns the keys applied."""
        poll = settings.poll
        self.mode = poll.mode
        self.reconcile_share = poll.reconcile_share
        self.concurrency = poll.concurrency
        self.lookback_ns = int(poll.lookback_s * 1e9)
        self.clock_skew_ns = int(poll.clock_skew_s * 1e9)
        # Only the daemon reloads: its poller alerts on stalls.
        self.stall_after = settings.stall.threshold_s if settings.stall.after else None
        self.models = list(dict.fromkeys(self._models_of(settings)))
        self.budget_per_cycle = self._budget_of(settings)
        keys = ("models", "mode", "reconcile_share", "concurrency", "lookback_s", "clock_skew_s")
        return {f"poll.{key}" for key in keys} | {"stall.after"}

    def _models_of(self, settings: Settings) -> list[str]:
        for spec in source_specs(settings):
            if spec.name == self.name:
                return spec.models
        return self.models  # the source is gone from the file: a restart applies that

    def _budget_of(self, settings: Settings) -> int | None:
        for spec in source_specs(settings):
            if spec.name == self.name:
                return cycle_budget(settings, spec)
        return self.budget_per_cycle

    def _scope(self) -> str:
        return "all" if not self.models else json.dumps(sorted(self.models))

    def known(self, model_id: str) -> ModelState | None:
        """What the last committed cycle knows of one model."""
        return (self._state or {}).get(model_id)

    async def _load(self) -> dict[str, ModelState]:
        if self._state is None:
            rows = await anyio.to_thread.run_sync(self.store.load_models)
            self._state = models_in(self.namespace, rows)
            self._fresh = await anyio.to_thread.run_sync(self.store.is_fresh, self.namespace)
            self._committed_scope = await anyio.to_thread.run_sync(self.store.load_scope, self.namespace)
        return self._state

    def _unknown_are_baseline(self, fresh: bool) -> bool:
        """Whether a model never seen before is history (True) or a new job.

        A first start, configured models, and a watch that just widened to all
        models (by a config change) take what they find as baseline; only a model
        that appears while all models were already watched is a new job.
        """
        if fresh or self.models:
            return True
        return self._committed_scope not in (None, "all")

    def plan(self) -> CyclePlan:
        """List or per model, decided here only: the list when watching everything or
        when asked to; for configured models, whichever takes fewer requests (unknown
        until the first listing, which tries it)."""
        if not self.models or self.mode in (PollMode.LIST, PollMode.EVENTS):
            return CyclePlan.LIST
        if len(self.models) == 1:
            return CyclePlan.PER_MODEL
        listing_is_cheaper = self._list_cost is None or self._list_cost < len(self.models)
        return CyclePlan.LIST if listing_is_cheaper else CyclePlan.PER_MODEL

    async def cycle(self, lease: Lease | None = None) -> CycleResult:
        """Poll once and commit what is new (renewing ``lease`` in the same transaction).
        Raises the source's and the store's errors."""
        state = await self._load()
        self._listed = None
        fresh = self._fresh
        baseline = self._unknown_are_baseline(fresh)
        plan = self.plan()
        failed: dict[str, str] = {}
        # A start on empty state with [poll] catch_up: what happened in that window is
        # reported, not taken as baseline (a rescheduled sidecar loses nothing recent).
        catch_up_from = self._clock_ns() - self.catch_up_ns if fresh and self.catch_up_ns > 0 else None
        if self.snapshot:
            fetched, not_found = await self._fetch_snapshots(state, baseline, failed, catch_up_from, plan)
        elif plan is CyclePlan.LIST:
            fetched, not_found = await self._fetch_listed(state, baseline, failed, catch_up_from)
        else:
            fetched, not_found = await self._fetch_each(state, failed)
        self._report_missing(not_found)
        self._report_failing(failed)
        detected_at_ns = self._clock_ns()

        changed: dict[str, ModelState] = {}
        transitions: list[Transition] = []
        diff = self._diff_snapshots if self.snapshot else self._diff_histories
        events_read = diff(
            state,
            fetched,
            changed,
            transitions,
            baseline=baseline,
            detected_at_ns=detected_at_ns,
            catch_up_from=catch_up_from,
        )

        self._mark_gone(state, changed, detected_at_ns)
        # Oldest first across models too; the sort is stable, so per-model order holds.
        transitions.sort(key=lambda t: t.occurred_at)
        if self.stall_after is not None:
            transitions.extend(self._stalls(state, changed, fetched.keys(), detected_at_ns))
        routes = list(self.routes())
        scope = self._scope()
        rows = {model_key(self.namespace, model_id): model for model_id, model in changed.items()}
        await anyio.to_thread.run_sync(
            functools.partial(
                self.store.commit_cycle,
                rows,
                transitions,
                routes,
                time.time(),
                scope=scope,
                lease=lease,
                namespace=self.namespace,
            )
        )
        state.update(changed)
        self._fresh = False
        self._committed_scope = scope
        return CycleResult(
            transitions=transitions,
            models=len(fetched),
            events_read=events_read,
            baseline=fresh,
            not_found=not_found,
            statuses={model_id: item.info for model_id, item in fetched.items()},
            plan=plan,
            failed=failed,
            sources={self.name: True},
        )

    def _mark_gone(self, state: dict[str, ModelState], changed: dict[str, ModelState], now_ns: int) -> None:
        """After a full listing: a known model it lacks is gone (marked once, kept,
        counted apart); a gone one it shows again is back."""
        listed = self._listed
        if listed is None:
            return
        for model_id, old in state.items():
            current = changed.get(model_id, old)
            if model_id in listed:
                if current.gone is not None:
                    log.info("model.back", model_id=model_id, source=self.name)
                    changed[model_id] = replace(current, gone=None)
            elif old.gone is None and (not self.models or model_id in self.models):
                log.info("model.gone", model_id=model_id, source=self.name, note="no longer in the list; kept")
                changed[model_id] = replace(current, gone=format_timestamp(now_ns, 3))

    def _stalls(
        self, state: dict[str, ModelState], changed: dict[str, ModelState], seen: Iterable[str], now_ns: int
    ) -> list[Transition]:
        """Stall alerts for the models this cycle saw (their state as it will be
        committed); the models' rows remember each, in ``changed``."""
        stall_after = self.stall_after
        assert stall_after is not None
        alerts = []
        for model_id in seen:
            current = changed.get(model_id) or state.get(model_id)
            if current is None:
                continue
            found = check_stall(
                model_id,
                current,
                lambda status: stall_after(status, self.provider),
                now_ns,
                slack_ns=self.clock_skew_ns + 10**9,
                provider=self.provider,
                source=self.name,
            )
            if found is not None:
                alert, changed[model_id] = found
                log.warning("model.stalled", model_id=model_id, status=alert.status, since=alert.since)
                alerts.append(alert)
        return alerts

    def _named(self, transitions: list[Transition]) -> list[Transition]:
        """Cohere's diff knows no source: a source of another name says its own."""
        if self.name == "cohere":
            return transitions
        return [replace(t, source=self.name) for t in transitions]

    def _diff_histories(
        self,
        state: dict[str, ModelState],
        fetched: dict[str, _Fetched],
        changed: dict[str, ModelState],
        transitions: list[Transition],
        *,
        baseline: bool,
        detected_at_ns: int,
        catch_up_from: int | None,
    ) -> int:
        """A cycle of a source with event histories (Cohere): each model's events
        against its cursor. Returns how many events were read."""
        events_read = 0
        for model_id, item in fetched.items():
            old = state.get(model_id)
            info = item.info
            if item.lazy_baseline:
                assert info.updated_at_ns is not None
                cursor = Cursor(info.updated_at_ns, frozenset(), info.status, lazy=True)
                changed[model_id] = ModelState(cursor, info.name, info.status, info.updated_at)
                continue
            if item.events is None:
                if old is not None and old.name != info.name:
                    changed[model_id] = replace(old, name=info.name)
                continue
            events_read += len(item.events)
            cursor, new = diff_events(
                model_id,
                info.name,
                old.cursor if old else None,
                item.events,
                baseline=baseline,
                detected_at_ns=detected_at_ns,
                lookback_ns=self.lookback_ns,
                clock_skew_ns=self.clock_skew_ns,
                catch_up_from_ns=catch_up_from,
            )
            undated = cursor.undated - (old.cursor.undated if old else frozenset())
            if undated and old is not None and old.cursor.lazy:
                # A baseline from the list cannot place them in time: they were there.
                log.warning("baseline.undated", model_id=model_id, events=len(undated), note="taken as history")
            elif undated and not baseline:
                # Reported with the time they were first seen: say so, once.
                log.warning("event.undated", model_id=model_id, events=len(undated), note="no usable created_at")
            consistent = not item.events or cursor.last_status == info.status
            changed[model_id] = ModelState(
                cursor=cursor,
                name=info.name,
                # Remember what the list said only once the events agree with it, so
                # an event that lags behind the list is read again next cycle.
                list_status=info.status if consistent else (old.list_status if old else None),
                list_updated=info.updated_at if consistent else (old.list_updated if old else None),
                stalled=old.stalled if old else None,  # the stay's alert, if the stay goes on
            )
            transitions.extend(self._named(new))
        return events_read

    def _diff_snapshots(
        self,
        state: dict[str, ModelState],
        fetched: dict[str, _Fetched],
        changed: dict[str, ModelState],
        transitions: list[Transition],
        *,
        baseline: bool,
        detected_at_ns: int,
        catch_up_from: int | None,
    ) -> int:
        """A snapshot provider's cycle: each job's status against the last one seen."""
        history_read = 0
        for model_id, item in fetched.items():
            old = state.get(model_id)
            info = item.info
            if item.lazy_baseline:
                cursor = baseline_cursor(info)
                changed[model_id] = ModelState(
                    cursor, info.name, info.status, info.updated_at, noticed_ns=detected_at_ns
                )
                continue
            if item.events is None:  # unchanged, not read
                if old is not None and old.name != info.name:
                    changed[model_id] = replace(old, name=info.name)
                continue
            history_read += len(item.events)
            found = diff_snapshot(
                model_id,
                info,
                old.cursor if old is not None else None,
                item.events,
                provider=self.provider,
                source=self.name,
                detected_at_ns=detected_at_ns,
                catch_up_from_ns=catch_up_from if old is None and baseline else None,
            )
            stay_goes_on = old is not None and found.cursor.last_status == old.cursor.last_status
            changed[model_id] = ModelState(
                found.cursor,
                info.name,
                info.status,
                info.updated_at,
                stalled=old.stalled if old is not None and stay_goes_on else None,
                noticed_ns=old.noticed_ns if old is not None and stay_goes_on else detected_at_ns,
            )
            transitions.extend(found.transitions)
        return history_read

    async def _fetch_snapshots(
        self,
        state: dict[str, ModelState],
        baseline: bool,
        failed: dict[str, str],
        catch_up_from: int | None,
        plan: CyclePlan,
    ) -> tuple[dict[str, _Fetched], list[str]]:
        """The jobs' snapshots (the list, or each configured job), then the history of
        only those whose status moved: the snapshot is the truth, the history fills
        in the steps between two polls. A first start takes the snapshot as baseline
        without reading a single history."""
        if plan is CyclePlan.LIST:
            listed, not_found = await self._list_wanted(failed)
        else:
            listed, not_found = await self._get_each(failed)
        fetched = {info.id: _Fetched(info) for info in listed}
        reads: list[str] = []
        for info in listed:
            old = state.get(info.id)
            if old is None:
                recent = catch_up_from is not None and (
                    info.updated_at_ns is None or info.updated_at_ns >= catch_up_from - self.clock_skew_ns
                )
                if baseline and not recent:
                    fetched[info.id].lazy_baseline = True
                else:
                    reads.append(info.id)
            elif old.cursor.last_status != info.status:
                reads.append(info.id)

        async def read(model_id: str) -> None:
            old = state.get(model_id)
            newer_than = None if old is None or old.cursor.at_ns is None else old.cursor.at_ns - self.lookback_ns
            try:
                fetched[model_id].events = await self.source.list_events(model_id, newer_than)
            except ModelNotFoundError:
                del fetched[model_id]
            except SourceError as exc:
                failed[model_id] = str(exc)
                del fetched[model_id]

        await self._run_all([functools.partial(read, model_id) for model_id in reads])
        return fetched, not_found

    async def _list_wanted(self, failed: dict[str, str]) -> tuple[list[ModelInfo], list[str]]:
        """The list, cut to the configured models (all when none are), and which of
        those it lacks; its unreadable entries go to ``failed``."""
        listing = await self.source.list_models()
        self._list_cost = listing.requests
        self._listed = {info.id for info in listing.models} | listing.rejected.keys()
        wanted = set(self.models)
        for model_id, why in listing.rejected.items():
            if not wanted or model_id in wanted:
                failed[model_id] = f"unreadable in the model list: {why}"
        listed = [info for info in listing.models if not wanted or info.id in wanted]
        return listed, sorted(wanted - {info.id for info in listed} - failed.keys())

    async def _get_each(self, failed: dict[str, str]) -> tuple[list[ModelInfo], list[str]]:
        found: dict[str, ModelInfo] = {}
        not_found: list[str] = []

        async def get(model_id: str) -> None:
            try:
                found[model_id] = await self.source.get_model(model_id)
            except ModelNotFoundError:
                not_found.append(model_id)
            except SourceError as exc:
                failed[model_id] = str(exc)

        await self._run_all([functools.partial(get, model_id) for model_id in self.models])
        return [found[m] for m in self.models if m in found], sorted(not_found)

    def _report_missing(self, not_found: list[str]) -> None:
        for model_id in not_found:
            if model_id not in self._missing:
                log.warning("model.not_found", model_id=model_id, fix="check the id in poll.models")
        self._missing = set(not_found)

    def _report_failing(self, failed: dict[str, str]) -> None:
        """Once per streak: when a model starts failing, and when it recovers."""
        for model_id, error in failed.items():
            if model_id not in self._failing:
                log.warning("model.failed", model_id=model_id, error=error, note="the others go on; retried next cycle")
        for model_id in self._failing.keys() - failed.keys():
            log.info("model.recovered", model_id=model_id)
        self._failing = dict(failed)

    async def _run_all(self, calls: list[Callable[[], Awaitable[None]]]) -> None:
        """Run coroutines with bounded concurrency; re-raise the first failure plainly."""
        errors: list[BaseException] = []

        async def one(call: Callable[[], Awaitable[None]]) -> None:
            async with self._limit:
                try:
                    await call()
                except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                    errors.append(exc)

        async with anyio.create_task_group() as group:
            for call in calls:
                group.start_soon(one, call)
        if errors:
            raise errors[0]

    def _reconcile_window(self, ids: list[str], list_requests: int, already: int) -> set[str]:
        """The next few models, round robin, whose events are re-read anyway."""
        if not ids:
            return set()
        size = max(1, math.floor(list_requests * self.reconcile_share)) if self.reconcile_share > 0 else 0
        if self.budget_per_cycle is not None:
            size = min(size, max(0, self.budget_per_cycle - list_requests - already))
        size = min(size, len(ids))
        start = self._reconcile_next % len(ids)
        self._reconcile_next = start + size
        return {ids[(start + i) % len(ids)] for i in range(size)}

    async def _fetch_listed(
        self, state: dict[str, ModelState], baseline: bool, failed: dict[str, str], catch_up_from: int | None
    ) -> tuple[dict[str, _Fetched], list[str]]:
        listed, not_found = await self._list_wanted(failed)
        fetched = {info.id: _Fetched(info) for info in listed}

        reads: list[tuple[str, int | None]] = []
        idle: list[str] = []
        for info in listed:
            item = fetched[info.id]
            old = state.get(info.id)
            if self.mode is PollMode.EVENTS:  # the naive way, on request: every history, every cycle
                reads.append((info.id, _newer_than(old)))
                continue
            if old is None:
                recent = catch_up_from is not None and (
                    info.updated_at_ns is None or info.updated_at_ns >= catch_up_from - self.clock_skew_ns
                )
                if baseline and info.updated_at_ns is not None and not recent:
                    item.lazy_baseline = True  # nothing to read: the list is the baseline
                else:
                    reads.append((info.id, None))
                continue
            if old.list_status != info.status or old.list_updated != info.updated_at:
                reads.append((info.id, _newer_than(old)))
            else:
                idle.append(info.id)
        reconciled = self._reconcile_window(sorted(idle), self._list_cost or 0, len(reads))
        reads.extend((model_id, _newer_than(state[model_id])) for model_id in sorted(reconciled))

        async def read(model_id: str, newer_than: int | None) -> None:
            try:
                fetched[model_id].events = await self.source.list_events(model_id, newer_than)
            except ModelNotFoundError:
                # Deleted between the list and now; the next list will tell.
                del fetched[model_id]
            except SourceError as exc:
                # This model only: the others commit and deliver, it is read again next cycle.
                failed[model_id] = str(exc)
                del fetched[model_id]

        await self._run_all([functools.partial(read, model_id, newer) for model_id, newer in reads])
        return fetched, not_found

    async def _fetch_each(
        self, state: dict[str, ModelState], failed: dict[str, str]
    ) -> tuple[dict[str, _Fetched], list[str]]:
        fetched: dict[str, _Fetched] = {}
        not_found: list[str] = []

        async def read(model_id: str) -> None:
            old = state.get(model_id)
            try:
                if old is not None and old.name is not None:
                    info = ModelInfo(model_id, old.name, old.cursor.last_status or "STATUS_UNSPECIFIED")
                else:
                    info = await self.source.get_model(model_id)
                events = await self.source.list_events(model_id, _newer_than(old))
            except ModelNotFoundError:
                not_found.append(model_id)
                return
            except SourceError as exc:
                failed[model_id] = str(exc)
                return
            dated = [event for event in events if event.created_at_ns is not None]
            latest = max(dated, key=Event.sort_key).status if dated else info.status
            fetched[model_id] = _Fetched(ModelInfo(info.id, info.name, latest, info.updated_at), events)

        await self._run_all([functools.partial(read, model_id) for model_id in self.models])
        return fetched, sorted(not_found)


def _newer_than(old: ModelState | None) -> int | None:
    """How far back a model's events must be read: down to its cursor's horizon (late
    events included), or all of them for a model never read (a lazy baseline too)."""
    if old is None or old.cursor.lazy:
        return None
    return old.cursor.horizon_ns
