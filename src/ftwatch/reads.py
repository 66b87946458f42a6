"""The reading half of a cycle: the source's list, its models, their histories.

Each read is one model's business: a model the API says is gone is dropped, one
whose read fails goes to ``failed`` (retried next cycle) and the others go on. A
key the API refuses, or an API that is down, ends the cycle (raised as it came).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

import anyio
import structlog

from ftwatch.compat import UNSEEN_STATUS
from ftwatch.model import Event, ModelInfo
from ftwatch.plan import PlanConfig, ReadPlan, newer_than, progress_reads
from ftwatch.sources.base import ModelNotFoundError, SourceError
from ftwatch.sources.protocol import ReadsProgress, Source
from ftwatch.state import Fetched, ModelState

__all__ = ["Reader"]

log = structlog.get_logger("ftwatch.reads")


class Reader:
    """Reads one source with at most ``concurrency`` requests in flight."""

    def __init__(self, source: Source, concurrency: int) -> None:
        self.source = source
        self._limit = anyio.CapacityLimiter(concurrency)
        #: Requests the last full listing took (``None``: never listed).
        self.list_cost: int | None = None
        #: Ids the last listing showed, readable or not.
        self.listed: set[str] = set()
        self._progress_failing: set[str] = set()
        self._progress_next = 0  # round robin over the running jobs, for their progress

    @property
    def concurrency(self) -> int:
        return int(self._limit.total_tokens)

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self._limit.total_tokens = value

    async def list_wanted(self, models: Sequence[str], failed: dict[str, str]) -> tuple[list[ModelInfo], list[str]]:
        """The list, cut to ``models`` (all when empty), and which of those it lacks;
        its unreadable entries go to ``failed``."""
        listing = await self.source.list_models()
        self.list_cost = listing.requests
        self.listed = {info.id for info in listing.models} | listing.rejected.keys()
        wanted = set(models)
        for model_id, why in listing.rejected.items():
            if not wanted or model_id in wanted:
                failed[model_id] = f"unreadable in the model list: {why}"
        listed = [info for info in listing.models if not wanted or info.id in wanted]
        return listed, sorted(wanted - {info.id for info in listed} - failed.keys())

    async def get_each(self, models: Sequence[str], failed: dict[str, str]) -> tuple[list[ModelInfo], list[str]]:
        """Each model's entry, asked one by one."""
        found: dict[str, ModelInfo] = {}
        not_found: list[str] = []

        async def get(model_id: str) -> None:
            try:
                found[model_id] = await self.source.get_model(model_id)
            except ModelNotFoundError:
                not_found.append(model_id)
            except SourceError as exc:
                failed[model_id] = str(exc)

        await self._run_all([functools.partial(get, model_id) for model_id in models])
        return [found[m] for m in models if m in found], sorted(not_found)

    async def read(self, listed: Sequence[ModelInfo], plan: ReadPlan, failed: dict[str, str]) -> dict[str, Fetched]:
        """The listed models with the histories ``plan`` names read; a model deleted
        between the list and its read is dropped (the next list will tell)."""
        fetched = {info.id: Fetched(info, lazy_baseline=info.id in plan.lazy) for info in listed}

        async def read(model_id: str, newer: int | None) -> None:
            try:
                events = await self.source.list_events(model_id, newer)
            except ModelNotFoundError:
                del fetched[model_id]
            except SourceError as exc:
                # This model only: the others commit and deliver, it is read again next cycle.
                failed[model_id] = str(exc)
                del fetched[model_id]
            else:
                fetched[model_id] = Fetched(fetched[model_id].info, events)

        await self._run_all([functools.partial(read, model_id, newer) for model_id, newer in plan.reads])
        return fetched

    async def read_progress(
        self, fetched: dict[str, Fetched], plan: ReadPlan, config: PlanConfig, list_requests: int
    ) -> None:
        """The newest progress of the running jobs :func:`~ftwatch.plan.progress_reads`
        picks, where the source reads it apart, into ``fetched``. A read that fails
        leaves that job's progress as it was: it is a view, never a reason to hold
        back the cycle (told once per streak, and counted with the request)."""
        source = self.source
        if not isinstance(source, ReadsProgress):
            return
        running = [m for m, item in fetched.items() if source.vocabulary.state_of(item.info.status) == "running"]
        wanted, self._progress_next = progress_reads(running, plan, config, list_requests, self._progress_next)
        failing: set[str] = set()

        async def read(model_id: str) -> None:
            try:
                progress = await source.read_progress(model_id)
            except SourceError as exc:
                failing.add(model_id)
                if model_id not in self._progress_failing:
                    log.warning("progress.unreadable", model_id=model_id, error=str(exc), note="kept as it was")
                return
            if progress is not None and model_id in fetched:
                fetched[model_id] = replace(fetched[model_id], progress=progress)

        await self._run_all([functools.partial(read, model_id) for model_id in wanted])
        self._progress_failing = failing | (self._progress_failing - set(wanted))

    async def read_each(
        self, models: Sequence[str], state: Mapping[str, ModelState], failed: dict[str, str]
    ) -> tuple[dict[str, Fetched], list[str]]:
        """Per model, without the list: each one's newest events (and its entry,
        until its name is known); its status is its newest dated event's."""
        fetched: dict[str, Fetched] = {}
        not_found: list[str] = []

        async def read(model_id: str) -> None:
            old = state.get(model_id)
            try:
                if old is not None and old.name is not None:
                    info = ModelInfo(model_id, old.name, old.cursor.last_status or UNSEEN_STATUS)
                else:
                    info = await self.source.get_model(model_id)
                events = await self.source.list_events(model_id, newer_than(old))
            except ModelNotFoundError:
                not_found.append(model_id)
                return
            except SourceError as exc:
                failed[model_id] = str(exc)
                return
            dated = [event for event in events if event.created_at_ns is not None]
            latest = max(dated, key=Event.sort_key).status if dated else info.status
            fetched[model_id] = Fetched(ModelInfo(info.id, info.name, latest, info.updated_at), events)

        await self._run_all([functools.partial(read, model_id) for model_id in models])
        return fetched, sorted(not_found)

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
