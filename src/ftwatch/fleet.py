"""Every configured source's poller, cycled together as one.

Each source (Cohere, OpenAI, Bedrock, a plug-in) has its own poller, budget and
models, and commits its own cycle; they run side by side, so a slow or failing API
holds up nobody else's. A source whose cycle fails is that source's problem only:
the others commit and deliver, and the cycle's result names the failed one under
``failed`` (as ``source:NAME``). Only when every source fails does the cycle fail
as a whole; a key an API refuses, or a lost lease, ends it as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import structlog

from ftwatch.errors import AuthRefusedError
from ftwatch.poller import CyclePlan, CycleResult, Poller
from ftwatch.settings import Settings
from ftwatch.store.base import Lease, LeaseLostError, ModelState

__all__ = ["Fleet"]

log = structlog.get_logger("ftwatch.fleet")

#: How a whole source shows in a cycle's ``failed``.
SOURCE_MARK = "source:"


class Fleet:
    """The pollers of all sources, in config order (see the module)."""

    def __init__(self, pollers: Sequence[Poller]) -> None:
        if not pollers:
            raise ValueError("a fleet needs at least one poller")
        self.pollers = list(pollers)
        self._failing: dict[str, str] = {}

    @property
    def models(self) -> list[str]:
        """Every configured model id (empty when each source watches all of its own)."""
        return [model_id for poller in self.pollers for model_id in poller.models]

    @property
    def budget_per_cycle(self) -> int | None:
        budgets = [poller.budget_per_cycle for poller in self.pollers]
        return None if any(b is None for b in budgets) else sum(b for b in budgets if b is not None)

    def known(self, model_id: str) -> ModelState | None:
        for poller in self.pollers:
            if (state := poller.known(model_id)) is not None:
                return state
        return None

    def reconfigure(self, settings: Settings) -> set[str]:
        applied: set[str] = set()
        for poller in self.pollers:
            applied |= poller.reconfigure(settings)
        return applied

    async def cycle(self, lease: Lease | None = None) -> CycleResult:
        """One cycle of every source. Raises when all fail (the first source's
        error), or when any API refuses its key or the lease is lost."""
        if len(self.pollers) == 1:
            return await self.pollers[0].cycle(lease)
        results: dict[str, CycleResult] = {}
        errors: dict[str, Exception] = {}

        async def one(poller: Poller) -> None:
            try:
                results[poller.name] = await poller.cycle(lease)
            except Exception as exc:  # noqa: BLE001 - judged below, per source
                errors[poller.name] = exc

        async with anyio.create_task_group() as group:
            for poller in self.pollers:
                group.start_soon(one, poller)
        for exc in errors.values():
            if isinstance(exc, AuthRefusedError | LeaseLostError):
                raise exc
        self._report(errors)
        if not results:
            raise errors[self.pollers[0].name]
        return self._merged(results, errors)

    def _report(self, errors: dict[str, Exception]) -> None:
        """Once per streak, like a failing model: when a source starts failing, and
        when it recovers."""
        for name, exc in errors.items():
            if name not in self._failing:
                log.warning("source.failed", source=name, error=str(exc), note="the other sources go on")
        for name in self._failing.keys() - errors.keys():
            log.info("source.recovered", source=name)
        self._failing = {name: str(exc) for name, exc in errors.items()}

    def _merged(self, results: dict[str, CycleResult], errors: dict[str, Exception]) -> CycleResult:
        ordered = [results[p.name] for p in self.pollers if p.name in results]
        transitions = [t for result in ordered for t in result.transitions]
        transitions.sort(key=lambda t: (t.stalled, t.occurred_at))
        failed = {f"{SOURCE_MARK}{name}": str(exc) for name, exc in errors.items()}
        for result in ordered:
            failed.update(result.failed)
        return CycleResult(
            transitions=transitions,
            models=sum(r.models for r in ordered),
            events_read=sum(r.events_read for r in ordered),
            baseline=any(r.baseline for r in ordered),
            not_found=sorted({m for r in ordered for m in r.not_found}),
            statuses={k: v for r in ordered for k, v in r.statuses.items()},
            plan=ordered[0].plan if len({r.plan for r in ordered}) == 1 else CyclePlan.LIST,
            failed=failed,
            sources={p.name: p.name in results for p in self.pollers},
        )
