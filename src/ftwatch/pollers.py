"""Every configured source's poller, each in its own lane.

Each source (of a built-in provider or a plug-in) has its own poller, budget and
models, and commits its own cycle. A source whose cycle fails is that source's
problem only: the others commit and deliver, and the cycle's result names the failed
one under ``failed`` (as ``source:NAME``). Only when every source fails does the
cycle fail as a whole; a key an API refuses, or a lost lease, ends it as before.

A slow or stuck source holds up nobody else: inside the daemon (:meth:`PollerGroup.lanes`)
each source's cycle runs in a task of its own, a group's cycle waits for it only a
short while (``patience_s``), and a cycle still running then goes on alone, its
outcome reported with a later cycle of the group; a source is never polled twice at once.
Every source cycle is bounded by ``timeout_s``: past it, it is abandoned (nothing of
it committed) and the source reported as failed, so ``ftwatch_source_up`` shows it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Mapping, Sequence

import anyio
import anyio.abc
import structlog

from ftwatch.cycle import CycleFindings
from ftwatch.errors import AuthRefusedError
from ftwatch.plan import CyclePlan
from ftwatch.poller import Poller, PollerConfig
from ftwatch.sources.base import SourceUnavailableError
from ftwatch.store.base import Lease, LeaseLostError, ModelState

__all__ = ["PollerGroup"]

log = structlog.get_logger("ftwatch.pollers")

#: How a whole source shows in a cycle's ``failed``.
SOURCE_MARK = "source:"

#: How long a group's cycle waits for its sources inside the daemon before it reports
#: those that finished (the others report with a later cycle).
PATIENCE_S = 5.0


class PollerGroup:
    """The pollers of all sources, in config order (see the module)."""

    def __init__(self, pollers: Sequence[Poller], *, timeout_s: float = 300.0, patience_s: float = PATIENCE_S) -> None:
        if not pollers:
            raise ValueError("a poller group needs at least one poller")
        self.pollers = list(pollers)
        self.timeout_s = timeout_s
        self.patience_s = patience_s
        self._failing: dict[str, str] = {}
        self._group: anyio.abc.TaskGroup | None = None
        #: Sources whose cycle runs now (in a lane), and outcomes not yet reported.
        self._busy: set[str] = set()
        self._outcomes: dict[str, CycleFindings | Exception] = {}
        self._finished = anyio.Event()

    @property
    def names(self) -> list[str]:
        return [poller.name for poller in self.pollers]

    @property
    def models(self) -> list[str]:
        """Every configured model id (empty when each source watches all of its own)."""
        return [model_id for poller in self.pollers for model_id in poller.models]

    @property
    def budget_per_cycle(self) -> int | None:
        budgets = [poller.budget_per_cycle for poller in self.pollers]
        return None if any(b is None for b in budgets) else sum(b for b in budgets if b is not None)

    def poller(self, name: str) -> Poller | None:
        return next((poller for poller in self.pollers if poller.name == name), None)

    def known(self, model_id: str) -> ModelState | None:
        for poller in self.pollers:
            if (state := poller.known(model_id)) is not None:
                return state
        return None

    def reconfigure(self, timeout_s: float, configs: Mapping[str, PollerConfig]) -> None:
        """A reload: the source timeout, and each poller's new configuration (a
        source no longer configured keeps its own until the swap removes it)."""
        self.timeout_s = timeout_s
        for poller in self.pollers:
            if poller.name in configs:
                poller.reconfigure(configs[poller.name])

    def swap(self, pollers: Sequence[Poller]) -> None:
        """The pollers from now on (a reload: sources added, removed or
        restarted). A lane still running for a name goes on to its end; its
        outcome is reported if the name is still configured, and a new poller of
        that name starts only after it."""
        self.pollers = list(pollers)
        names = set(self.names)
        self._failing = {name: why for name, why in self._failing.items() if name in names}

    @contextlib.asynccontextmanager
    async def lanes(self) -> AsyncIterator[None]:
        """Run each source's cycles in a task of its own while inside (the daemon)."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield
            finally:
                self._group = None
                group.cancel_scope.cancel()

    async def _one(self, poller: Poller, lease: Lease | None) -> None:
        outcome: CycleFindings | Exception
        try:
            with anyio.fail_after(self.timeout_s):
                outcome = await poller.cycle(lease)
        except TimeoutError:
            outcome = SourceUnavailableError(
                f"its cycle took longer than {self.timeout_s:g}s and was abandoned (nothing of it committed);"
                " raise [poll] source_timeout_s if the API is only slow"
            )
        except Exception as exc:  # noqa: BLE001 - judged by the group, per source
            outcome = exc
        self._outcomes[poller.name] = outcome
        self._busy.discard(poller.name)
        self._finished.set()

    async def cycle(self, lease: Lease | None = None, only: Collection[str] | None = None) -> CycleFindings:
        """One cycle of every source (or of those named in ``only``). Raises when all
        that reported failed (the first one's error), or when any API refuses its
        key or the lease is lost."""
        chosen = [p for p in self.pollers if only is None or p.name in only]
        if self._group is None:
            async with anyio.create_task_group() as group:
                for poller in chosen:
                    group.start_soon(self._one, poller, lease)
        else:
            await self._in_lanes(self._group, chosen, lease)
        outcomes, self._outcomes = {n: o for n, o in self._outcomes.items() if n in self.names}, {}
        results = {name: o for name, o in outcomes.items() if isinstance(o, CycleFindings)}
        errors = {name: o for name, o in outcomes.items() if not isinstance(o, CycleFindings)}
        for exc in errors.values():
            if isinstance(exc, AuthRefusedError | LeaseLostError):
                raise exc
        self._report(errors)
        if errors and not results:
            raise errors[next(name for name in self.names if name in errors)]
        return self._merged(results, errors)

    async def _in_lanes(self, group: anyio.abc.TaskGroup, chosen: list[Poller], lease: Lease | None) -> None:
        for poller in chosen:
            if poller.name not in self._busy:
                self._busy.add(poller.name)
                group.start_soon(self._one, poller, lease)
        with anyio.move_on_after(self.patience_s):
            while any(p.name in self._busy for p in chosen):
                self._finished = anyio.Event()
                await self._finished.wait()
        for name in sorted(self._busy & {p.name for p in chosen}):
            log.debug("source.still_polling", source=name, note="reported with a later cycle; the others go on")

    def _report(self, errors: dict[str, Exception]) -> None:
        """Once per streak, like a failing model: when a source starts failing, and
        when it recovers (a source that did not report this cycle keeps its streak)."""
        for name, exc in errors.items():
            # One source alone: its failure is the cycle's, which the loop logs.
            if name not in self._failing and len(self.pollers) > 1:
                log.warning("source.failed", source=name, error=str(exc), note="the other sources go on")
            self._failing[name] = str(exc)

    def _recovered(self, results: dict[str, CycleFindings]) -> None:
        for name in self._failing.keys() & results.keys():
            if len(self.pollers) > 1:
                log.info("source.recovered", source=name)
            del self._failing[name]

    def _merged(self, results: dict[str, CycleFindings], errors: dict[str, Exception]) -> CycleFindings:
        self._recovered(results)
        ordered = [results[p.name] for p in self.pollers if p.name in results]
        if len(ordered) == 1 and not errors:
            return ordered[0]
        if not ordered:  # every chosen source is still polling: nothing to report yet
            return CycleFindings(transitions=[], models=0, events_read=0, baseline=False, sources={})
        transitions = [t for result in ordered for t in result.transitions]
        transitions.sort(key=lambda t: (t.stalled, t.occurred_at))
        failed = {f"{SOURCE_MARK}{name}": str(exc) for name, exc in errors.items()}
        for result in ordered:
            failed.update(result.failed)
        return CycleFindings(
            transitions=transitions,
            models=sum(r.models for r in ordered),
            events_read=sum(r.events_read for r in ordered),
            baseline=any(r.baseline for r in ordered),
            not_found=sorted({m for r in ordered for m in r.not_found}),
            statuses={k: v for r in ordered for k, v in r.statuses.items()},
            plan=ordered[0].plan if len({r.plan for r in ordered}) == 1 else CyclePlan.LIST,
            failed=failed,
            sources={name: name in results for name in [*results, *errors]},
            origin={k: v for r in ordered for k, v in r.origin.items()},
            progress={name: jobs for r in ordered for name, jobs in r.progress.items()},
        )
