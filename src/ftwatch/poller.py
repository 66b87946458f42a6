"""One poll cycle: source -> diff -> store. Knows no notifier, only their routes."""

from __future__ import annotations

import functools
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import structlog

from ftwatch.diff import diff_events
from ftwatch.model import Event, ModelInfo, Transition
from ftwatch.outbox import Route
from ftwatch.source import ModelNotFoundError, Source
from ftwatch.store import ModelState, Store

__all__ = ["CycleResult", "Poller"]

log = structlog.get_logger("ftwatch.poller")


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


@dataclass(slots=True)
class _Fetched:
    info: ModelInfo
    events: list[Event] | None  # None: not read this cycle


class Poller:
    """Runs cycles against one source and one store.

    ``models`` empty means every model of the key: then a cycle reads the model list
    and asks for the events of only the models whose status or ``updated_at`` moved,
    the new ones, and a rotating share of the rest (``reconcile_every``).
    """

    def __init__(
        self,
        source: Source,
        store: Store,
        *,
        models: Sequence[str] = (),
        routes: Callable[[], Sequence[Route]] = lambda: (),
        concurrency: int = 8,
        reconcile_every: int = 10,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.source = source
        self.store = store
        self.models = list(dict.fromkeys(models))
        self.routes = routes
        self.reconcile_every = reconcile_every
        self._limit = anyio.CapacityLimiter(concurrency)
        self._clock_ns = wall_clock_ns
        self._state: dict[str, ModelState] | None = None
        self._fresh = True
        self._cycle_no = 0
        self._missing: set[str] = set()

    def known(self, model_id: str) -> ModelState | None:
        """What the last committed cycle knows of one model."""
        return (self._state or {}).get(model_id)

    async def _load(self) -> dict[str, ModelState]:
        if self._state is None:
            self._state = await anyio.to_thread.run_sync(self.store.load_models)
            self._fresh = await anyio.to_thread.run_sync(self.store.is_fresh)
        return self._state

    def _reconcile_turn(self, model_id: str) -> bool:
        # Spread the full re-read over the cycles rather than doing it in one burst.
        return zlib.crc32(model_id.encode()) % self.reconcile_every == self._cycle_no % self.reconcile_every

    async def cycle(self) -> CycleResult:
        """Poll once and commit what is new. Raises the source's errors."""
        state = await self._load()
        fresh = self._fresh
        fetched, not_found = await (self._fetch_listed(state) if not self.models else self._fetch_explicit(state))
        detected_at_ns = self._clock_ns()

        changed: dict[str, ModelState] = {}
        transitions: list[Transition] = []
        events_read = 0
        for model_id, item in fetched.items():
            old = state.get(model_id)
            if item.events is None:
                if old is not None and old.name != item.info.name:
                    changed[model_id] = ModelState(old.cursor, item.info.name, old.list_status, old.list_updated_ns)
                continue
            events_read += len(item.events)
            # First start, or a model named in the config: history so far is the baseline.
            # A model that shows up later in all-models mode is a new job: all is news.
            baseline = fresh or bool(self.models)
            cursor, new = diff_events(
                model_id,
                item.info.name,
                old.cursor if old else None,
                item.events,
                baseline=baseline,
                detected_at_ns=detected_at_ns,
            )
            consistent = not item.events or cursor.last_status == item.info.status
            changed[model_id] = ModelState(
                cursor=cursor,
                name=item.info.name,
                # Remember what the list said only once the events agree with it, so
                # an event that lags the list is fetched again next cycle.
                list_status=item.info.status if consistent else (old.list_status if old else None),
                list_updated_ns=item.info.updated_at_ns if consistent else (old.list_updated_ns if old else None),
            )
            transitions.extend(new)

        # Oldest first across models too; the sort is stable, so per-model order holds.
        transitions.sort(key=lambda t: t.occurred_at)
        routes = list(self.routes())
        await anyio.to_thread.run_sync(self.store.commit_cycle, changed, transitions, routes, time.time())
        state.update(changed)
        self._fresh = False
        self._cycle_no += 1
        return CycleResult(
            transitions=transitions,
            models=len(fetched),
            events_read=events_read,
            baseline=fresh,
            not_found=not_found,
            statuses={model_id: item.info for model_id, item in fetched.items()},
        )

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

    async def _fetch_listed(self, state: dict[str, ModelState]) -> tuple[dict[str, _Fetched], list[str]]:
        listed = await self.source.list_models()
        fetched = {info.id: _Fetched(info, None) for info in listed}

        async def read(model_id: str, newer_than: int | None) -> None:
            try:
                fetched[model_id].events = await self.source.list_events(model_id, newer_than)
            except ModelNotFoundError:
                # Deleted between the list and now; the next list will tell.
                del fetched[model_id]

        calls: list[Callable[[], Awaitable[None]]] = []
        for info in listed:
            old = state.get(info.id)
            stale = (
                old is None
                or old.list_status != info.status
                or old.list_updated_ns != info.updated_at_ns
                or self._reconcile_turn(info.id)
            )
            if stale:
                newer = old.cursor.at_ns if old is not None else None
                calls.append(functools.partial(read, info.id, newer))
        await self._run_all(calls)
        return fetched, []

    async def _fetch_explicit(self, state: dict[str, ModelState]) -> tuple[dict[str, _Fetched], list[str]]:
        fetched: dict[str, _Fetched] = {}
        not_found: list[str] = []

        async def read(model_id: str) -> None:
            old = state.get(model_id)
            try:
                if old is not None and old.name is not None:
                    info = ModelInfo(model_id, old.name, old.cursor.last_status or "STATUS_UNSPECIFIED")
                else:
                    info = await self.source.get_model(model_id)
                events = await self.source.list_events(model_id, old.cursor.at_ns if old else None)
            except ModelNotFoundError:
                not_found.append(model_id)
                if model_id not in self._missing:
                    log.warning("model.not_found", model_id=model_id, fix="check the id in poll.models")
                self._missing.add(model_id)
                return
            self._missing.discard(model_id)
            latest = max(events, key=Event.sort_key).status if events else info.status
            fetched[model_id] = _Fetched(ModelInfo(info.id, info.name, latest, info.updated_at_ns), events)

        await self._run_all([functools.partial(read, model_id) for model_id in self.models])
        return fetched, sorted(not_found)
