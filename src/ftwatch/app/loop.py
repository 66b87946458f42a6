"""The poll loop, the same for ``run``, ``watch`` and ``demo``: cycle, report, sleep.

Each cycle's :class:`~ftwatch.poller.CycleReport` goes to the subscribers the command
chose (metrics, health, sd_notify, the dispatcher's wake-up, the live view). A cycle
that fails (the API, the state file) is a report like any other; a key the API
refuses is an exception, and ends the command.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import anyio
import structlog

from ftwatch.cycle import CycleReport, Failed, FailedAt, Polled, Standby
from ftwatch.leadership import Leadership
from ftwatch.ops.health import Health
from ftwatch.pollers import PollerGroup
from ftwatch.settings import Settings, request_limits
from ftwatch.sources.base import RequestDone, SourceError
from ftwatch.store.base import LeaseLostError, StoreError

__all__ = ["PollLoop", "Replicas", "RequestTally"]

log = structlog.get_logger("ftwatch.loop")

#: Pushes closer together than this make one extra cycle, not one each.
PUSH_COALESCE_S = 2.0


def _nothing() -> None:
    pass


class RequestTally:
    """The API requests made, in all and per source, and each source's limit
    (``max_requests_per_minute``): subscribed to the sources when they are built
    (before the loop is), read by the loop for each cycle's figures and the
    over-budget warning."""

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self.total = 0
        self.by_source: collections.Counter[str] = collections.Counter()
        self.limits = dict(limits or {})

    def count(self, request: RequestDone) -> None:
        self.total += 1
        self.by_source[request.source] += 1


@dataclass(frozen=True, slots=True)
class Replicas:
    """A loop's part among replicas on one shared store: it polls while it holds
    ``leadership``'s lease, and then also for the pushes the other replicas took
    (``asked_elsewhere``; None where webhooks are not taken)."""

    leadership: Leadership
    asked_elsewhere: Callable[[], Awaitable[set[str]]] | None = None


class PollLoop:
    """Runs a poller's cycles every ``interval_s`` and reports each one.

    :attr:`before_cycle` runs between two cycles (a reload applies there, never in the
    middle of one). ``tally``'s limits (each source's requests per minute) and each
    poller's budget give the over-budget warning its numbers.
    """

    def __init__(
        self,
        poller: PollerGroup,
        *,
        interval_s: float,
        health: Health,
        subscribers: Sequence[Callable[[CycleReport], None]] = (),
        replicas: Replicas | None = None,
        tally: RequestTally | None = None,
    ) -> None:
        self.poller = poller
        self.interval_s = interval_s
        self.health = health
        self.subscribers = list(subscribers)
        #: Runs between two cycles (a reload applies there, never in the middle of one).
        self.before_cycle: Callable[[], None] = _nothing
        self.leadership = replicas.leadership if replicas is not None else None
        self.tally = tally or RequestTally()
        #: The error of the failing streak (None: the last cycle was good), its length,
        #: and whether the slow streak was told.
        self._failing: str | None = None
        self._failing_for = 0
        self._told_slow = False
        self._polled = False
        self._wakeup = anyio.Event()
        #: A full cycle is wanted now (a reload); sources a push asked to poll soon.
        self._full_asked = False
        self._asked: set[str] = set()
        self._last_started = -math.inf
        #: Pushes other replicas took (a shared store): the leader looks every second.
        self._asked_elsewhere = replicas.asked_elsewhere if replicas is not None else None

    def wake(self) -> None:
        """End the current sleep now with a full cycle (a reload is waiting)."""
        self._full_asked = True
        self._wakeup.set()

    def poll_soon(self, source: str) -> None:
        """A push said ``source`` has news: poll it, and only it, soon. Pushes are
        coalesced: at most one extra cycle per :data:`PUSH_COALESCE_S`."""
        self._asked.add(source)
        self._wakeup.set()

    def reconfigure(self, settings: Settings) -> None:
        self.interval_s = settings.poll.interval_s
        self.tally.limits = request_limits(settings)

    async def cycle(self, only: Collection[str] | None = None) -> CycleReport:
        """One cycle (of the sources in ``only``, else all), reported. Raises only
        :class:`~ftwatch.errors.AuthRefusedError`."""
        started = anyio.current_time()
        self._last_started = started
        self.tally.by_source.clear()
        requests_before = self.tally.total
        if self.leadership is not None and not await self.leadership.ensure():
            return self._report(Standby())
        report: CycleReport
        try:
            result = await self.poller.cycle(lease=self.leadership.lease() if self.leadership else None, only=only)
        except LeaseLostError:
            assert self.leadership is not None
            self.leadership.lost()
            return self._report(Standby(anyio.current_time() - started))
        except SourceError as exc:
            self._failed(str(exc))
            report = Failed(str(exc), FailedAt.API, anyio.current_time() - started, self.tally.total - requests_before)
        except StoreError as exc:
            # Nothing of the cycle was kept (rolled back): the next one reads it all again.
            self._failed(str(exc), note="nothing committed; the next cycle tries again")
            report = Failed(
                str(exc), FailedAt.STORE, anyio.current_time() - started, self.tally.total - requests_before
            )
        else:
            report = Polled(result, anyio.current_time() - started, self.tally.total - requests_before)
            if self._failing is not None:
                log.info("poll.recovered", after=self._failing_for, error_was=self._failing)
                self._failing, self._failing_for = None, 0
            if self.leadership is not None:
                self.leadership.committed()
            self._log(report)
        if self.leadership is not None:
            await self.leadership.polled(isinstance(report, Polled))
        return self._report(report)

    def _spent(self, started: float, requests_before: int) -> tuple[float, int]:
        """A cycle's seconds and requests so far."""
        return anyio.current_time() - started, self.tally.total - requests_before

    def _failed(self, error: str, **extra: str) -> None:
        """Once per streak: the first failed cycle is a warning, the rest debug (the
        retries inside each are the library's, at debug too); a recovery says how many."""
        self._failing_for += 1
        if self._failing is None:
            log.warning("poll.failed", error=error, **extra)
        else:
            log.debug("poll.failed", error=error, cycles=self._failing_for, **extra)
        self._failing = error

    def _report(self, report: CycleReport) -> CycleReport:
        for subscriber in self.subscribers:
            subscriber(report)
        return report

    def _log(self, report: Polled) -> None:
        result = report.findings
        for transition in result.transitions:
            log.info(
                "transition.detected",
                model_id=transition.model_id,
                model_name=transition.model_name,
                status=transition.status,
                previous_status=transition.previous_status,
                transition_id=transition.id,
            )
        # A cycle that changed nothing is routine: at debug, so a quiet watcher is quiet
        # (this process's first polled cycle is told: it shows polling works).
        eventful = result.transitions or result.failed or result.baseline or result.not_found or not self._polled
        self._polled = True
        (log.info if eventful else log.debug)(
            "poll.cycle",
            models=result.models,
            plan=str(result.plan),
            requests=report.requests,
            events=result.events_read,
            transitions=len(result.transitions),
            failed=len(result.failed),
            baseline=result.baseline,
            seconds=round(report.seconds, 3),
        )
        if result.baseline:
            return
        for poller in self.poller.pollers:
            # Each source against its own budget, named by its own key.
            spent, budget = self.tally.by_source[poller.name], poller.budget_per_cycle
            if budget is not None and spent > budget:
                log.warning(
                    "poll.over_budget",
                    source=poller.name,
                    requests=spent,
                    budget=budget,
                    max_requests_per_minute=self.tally.limits.get(poller.name),
                    interval_s=self.interval_s,
                    fix=f"cycles stretch to stay within the budget; raise poll.interval_s or {poller.name}'s"
                    " max_requests_per_minute to keep to it",
                )

    async def run(self, *, cycles: float = math.inf) -> None:
        """Cycle until cancelled (or ``cycles`` times), sleeping out each interval in
        short steps so the heartbeat shows an idle loop is alive. Each source runs in
        a lane of its own (:meth:`PollerGroup.lanes`): a slow one delays no other."""
        async with self.poller.lanes():
            await self._run(cycles)

    async def _run(self, cycles: float) -> None:
        done = 0
        while done < cycles:
            self.before_cycle()
            started = anyio.current_time()
            self._full_asked = False
            await self.cycle()
            done += 1
            elapsed = anyio.current_time() - started
            slow = elapsed > self.interval_s and self._failing is None  # a failure's slowness is the failure's
            if not slow:
                self._told_slow = False
            elif not self._told_slow:
                self._told_slow = True
                log.warning(
                    "poll.slow",
                    cycle_s=round(elapsed, 3),
                    interval_s=self.interval_s,
                    fix="raise poll.interval_s or the source's max_requests_per_minute, or watch fewer models",
                )
            deadline = started + self.interval_s
            while done < cycles and await self._sleep_until(deadline):
                if self._full_asked:
                    break
                # A push: wait out the coalescing window (more pushes join this one),
                # then poll only the sources asked for, if the interval's cycle is
                # not due first.
                await self._sleep_until(min(deadline, self._last_started + PUSH_COALESCE_S), wake=False)
                if self._full_asked or anyio.current_time() >= deadline:
                    break
                asked, self._asked = self._asked, set()
                if asked:
                    await self.cycle(only=asked)

    async def _sleep_until(self, deadline: float, *, wake: bool = True) -> bool:
        """Sleep in steps of at most a second (a heartbeat each, and a look at what
        other replicas were asked); True when woken before ``deadline``."""
        while (left := deadline - anyio.current_time()) > 0:
            with anyio.move_on_after(min(left, 1.0)):
                await self._wakeup.wait()
            self.health.beat()
            await self._look_elsewhere()
            if self._wakeup.is_set():
                self._wakeup = anyio.Event()
                if wake:
                    return True
        return False

    async def _look_elsewhere(self) -> None:
        if self._asked_elsewhere is None or (self.leadership is not None and not self.leadership.leading):
            return
        try:
            asked = await self._asked_elsewhere()
        except StoreError as exc:
            log.debug("push.relay_failed", error=str(exc))
            return
        for source in asked:
            self.poll_soon(source)
