"""``ftwatch run``: the poll loop, the dispatcher, the health server, signals, sd_notify.

One task group owns them all. SIGTERM/SIGINT stop the polling, give deliveries in
flight a short grace period, and leave everything else in the outbox.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import anyio
import httpx
import structlog
from anyio.abc import TaskStatus

from ftwatch import __version__
from ftwatch.asgi_server import bind_socket, serve_asgi
from ftwatch.dispatch import Dispatcher
from ftwatch.errors import AuthRefusedError, ConfigError, FtwatchError
from ftwatch.health import Health, health_app
from ftwatch.logs import set_log_level
from ftwatch.metrics import Metrics
from ftwatch.notifiers import LoadedNotifier, NotifierContext, build_notifiers
from ftwatch.outbox import RetryPolicy, Route
from ftwatch.poller import CycleResult, Poller
from ftwatch.ratelimit import RateLimiter
from ftwatch.sdnotify import SystemdNotifier
from ftwatch.settings import KeySource, Settings, load_settings
from ftwatch.source import ApiWait, CohereSource, SourceError
from ftwatch.store import Store, StoreError

__all__ = ["Daemon", "api_client", "make_source", "routes_of"]

log = structlog.get_logger("ftwatch.daemon")


def routes_of(notifiers: Sequence[LoadedNotifier]) -> list[Route]:
    return [Route(n.key, frozenset(n.config.statuses), frozenset(n.config.models)) for n in notifiers]


#: Connections the API client may hold: the most ``poll.concurrency`` allows, so a
#: reload can raise the concurrency without a new client (the limiter bounds it).
_MAX_CONNECTIONS = 64


def api_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=settings.cohere.timeout_s,
        limits=httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_CONNECTIONS),
    )


def open_store(settings: Settings) -> Store:
    return Store(settings.state_path(), busy_timeout_s=settings.state.busy_timeout_s)


def poller_for(
    source: CohereSource,
    store: Store,
    settings: Settings,
    *,
    routes: Callable[[], Sequence[Route]] = lambda: (),
    budget_per_cycle: int | None = None,
) -> Poller:
    """A poller with the settings' poll section: ``run`` and ``watch`` poll the same way."""
    return Poller(
        source,
        store,
        models=settings.poll.models,
        concurrency=settings.poll.concurrency,
        reconcile_share=settings.poll.reconcile_share,
        mode=settings.poll.mode,
        lookback_ns=int(settings.poll.lookback_s * 1e9),
        clock_skew_ns=int(settings.poll.clock_skew_s * 1e9),
        routes=routes,
        budget_per_cycle=budget_per_cycle,
    )


def make_source(
    http: httpx.AsyncClient,
    settings: Settings,
    metrics: Metrics | None = None,
    health: Health | None = None,
    on_request: Callable[[], None] | None = None,
) -> CohereSource:
    def observe(endpoint: str, code: str, seconds: float) -> None:
        if metrics is not None:
            metrics.api_request(endpoint, code, seconds)
        if health is not None:
            health.beat()
        if on_request is not None:
            on_request()

    def on_wait(wait: ApiWait) -> None:
        capped = f" (capped from {wait.asked_s:g}s by cohere.max_retry_after_s)" if wait.asked_s > wait.seconds else ""
        log.warning("api.retry_after", endpoint=wait.endpoint, wait_s=wait.seconds, asked_s=wait.asked_s)
        if health is not None:
            health.waiting(wait.seconds, f"the API asked to retry after {wait.asked_s:g}s{capped}")

    return CohereSource(
        http,
        base_url=settings.cohere.base_url,
        key_source=KeySource(settings.cohere.api_key_file),
        client_name=settings.cohere.client_name,
        limiter=RateLimiter(settings.cohere.max_requests_per_minute),
        max_attempts=settings.cohere.max_attempts,
        retry_initial_s=settings.cohere.retry_initial_s,
        retry_max_s=settings.cohere.retry_max_s,
        observer=observe,
        on_wait=on_wait,
        max_retry_after_s=settings.cohere.max_retry_after_s,
        auth_retry_s=settings.cohere.auth_retry_s,
    )


class Daemon:
    """Everything ``ftwatch run`` runs, for one configuration (reloadable)."""

    def __init__(self, settings: Settings, config_path: Path | None, *, stdout: IO[str] = sys.stdout) -> None:
        self.settings = settings
        self.config_path = config_path
        self.stdout = stdout
        self.metrics = Metrics(__version__)
        self.health = Health(settings.poll.interval_s)
        self.requests = 0  # API requests so far, for the budget warning
        self.systemd = SystemdNotifier()
        self.fatal: FtwatchError | None = None
        self._stop = anyio.Event()
        self._reloaded: Settings | None = None  # applied by the poll loop, between cycles
        self._context: NotifierContext | None = None
        self._wake_poll = anyio.Event()

    def stop(self) -> None:
        """Stop as SIGTERM would."""
        self._stop.set()

    async def run(self, *, once: bool = False) -> None:
        store = await anyio.to_thread.run_sync(open_store, self.settings)
        try:
            async with api_client(self.settings) as api_http, httpx.AsyncClient(timeout=10.0) as hook_http:
                context = NotifierContext(http=hook_http, stdout=self.stdout)
                notifiers = build_notifiers(self.settings.notifiers, context)
                source = make_source(api_http, self.settings, self.metrics, self.health, self._count_request)
                dispatcher = Dispatcher(
                    store,
                    self._policy(),
                    observer=self.metrics.notification,
                    on_store_error=lambda operation: self.metrics.store_errors.labels(operation).inc(),
                )
                poller = poller_for(
                    source,
                    store,
                    self.settings,
                    routes=lambda: routes_of(dispatcher.notifiers),
                    budget_per_cycle=self._budget_per_cycle(),
                )
                log.info(
                    "daemon.start",
                    version=__version__,
                    models=len(self.settings.poll.models) or "all",
                    notifiers=[n.key for n in notifiers],
                    state=str(store.path),
                    once=once,
                )
                if once:
                    await self._run_once(poller, dispatcher, notifiers)
                else:
                    await self._run_forever(poller, dispatcher, notifiers, context)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.close)
        if self.fatal is not None:
            raise self.fatal

    def _count_request(self) -> None:
        self.requests += 1

    def _budget_per_cycle(self) -> int:
        """Requests one cycle may make if cycles are to keep to the interval."""
        return max(1, int(self.settings.cohere.max_requests_per_minute * self.settings.poll.interval_s / 60))

    def _policy(self) -> RetryPolicy:
        d = self.settings.delivery
        return RetryPolicy(initial_s=d.retry_initial_s, max_s=d.retry_max_s, give_up_after_s=d.give_up_after_s)

    async def _run_once(self, poller: Poller, dispatcher: Dispatcher, notifiers: list[LoadedNotifier]) -> None:
        dispatcher.set_notifiers(notifiers)
        result = await self._cycle(poller, dispatcher)
        if self.fatal is not None:
            return
        # What earlier runs left undelivered goes out even when this poll failed.
        failed = await dispatcher.deliver_due(notifiers)
        if failed:
            log.warning("once.undelivered", notifiers_failed=failed, note="kept in the outbox for the next run")
        if result is None:
            # A cron job should hear that this run saw nothing: exit 1, one line.
            self.fatal = FtwatchError(f"the API could not be polled: {self.health.last_error}; nothing was lost")

    async def _run_forever(
        self,
        poller: Poller,
        dispatcher: Dispatcher,
        notifiers: list[LoadedNotifier],
        context: NotifierContext,
    ) -> None:
        async with anyio.create_task_group() as group:
            await group.start(self._signals, context)  # handlers in place before READY=1
            group.start_soon(dispatcher.run, notifiers)
            group.start_soon(self._outbox_gauges, dispatcher)
            if self.settings.http.listen:
                host, _, port = self.settings.http.listen.rpartition(":")
                try:
                    sock = bind_socket(host, int(port))
                except OSError as exc:
                    raise ConfigError(
                        f"cannot listen on {self.settings.http.listen}: {exc.strerror}; "
                        'change [http] listen (or "" to turn it off)'
                    ) from None
                bound = sock.getsockname()[1]
                await group.start(serve_asgi, health_app(self.health, self.metrics), sock)
                log.info("http.listening", address=f"{host}:{bound}")
            if self.systemd.watchdog_interval_s is not None:
                group.start_soon(self._watchdog, self.systemd.watchdog_interval_s)
            # Ready once the loop runs: an API that is down at boot shows in STATUS=
            # and /readyz; withholding READY=1 would turn it into a restart loop.
            self.systemd.notify("READY=1", "STATUS=started; first poll under way")
            poll_scope = anyio.CancelScope()
            group.start_soon(self._poll_loop, poller, dispatcher, poll_scope)
            await self._stop.wait()
            poll_scope.cancel()
            self.systemd.notify("STOPPING=1")
            log.info("daemon.stopping", grace_s=self.settings.delivery.shutdown_grace_s)
            await dispatcher.stop(self.settings.delivery.shutdown_grace_s)
            group.cancel_scope.cancel()
        log.info("daemon.stopped")

    async def _outbox_gauges(self, dispatcher: Dispatcher) -> None:
        """Keep the outbox gauges fresh from a worker thread: a scrape never touches
        the state file, so a locked file cannot stall /metrics."""
        warned: set[str] = set()
        while True:
            try:
                pending = await anyio.to_thread.run_sync(dispatcher.store.count_deliveries)
            except StoreError as exc:
                self.metrics.store_errors.labels("count_deliveries").inc()
                log.warning("store.failed", operation="count_deliveries", error=str(exc))
            else:
                configured = {n.key for n in dispatcher.notifiers}
                self.metrics.outbox(pending, configured)
                orphans = {key: n for key, n in pending.items() if key not in configured and n}
                for key in orphans.keys() - warned:
                    log.warning(
                        "outbox.orphaned",
                        notifier=key,
                        pending=orphans[key],
                        note="no notifier with this key is configured: kept, sent if it comes back",
                    )
                warned = set(orphans)
            await anyio.sleep(2.0)

    async def _cycle(self, poller: Poller, dispatcher: Dispatcher) -> CycleResult | None:
        started = anyio.current_time()
        requests_before = self.requests
        try:
            result = await poller.cycle()
        except AuthRefusedError as exc:
            self.fatal = exc
            self.health.failed("the API refused the key")
            self._stop.set()
            return None
        except SourceError as exc:
            self.metrics.polls.labels("error").inc()
            self.health.failed(str(exc))
            log.warning("poll.failed", error=str(exc))
            self.systemd.notify(f"STATUS=the API cannot be polled: {str(exc)[:200]}")
            return None
        except StoreError as exc:
            # Nothing of the cycle was kept (rolled back): the next one reads it all again.
            self.metrics.polls.labels("error").inc()
            self.metrics.store_errors.labels("commit_cycle").inc()
            self.health.failed(str(exc))
            log.error("poll.failed", error=str(exc), note="nothing committed; the next cycle tries again")
            self.systemd.notify(f"STATUS=the state cannot be written: {str(exc)[:200]}")
            return None
        elapsed = anyio.current_time() - started
        for error in result.failed.values():
            self.metrics.model_failures.labels("unreadable" if "unreadable" in error else "api").inc()
        self.metrics.polls.labels("ok").inc()
        self.metrics.cycle_seconds.observe(elapsed)
        self.metrics.last_success.set(time.time())
        self.health.succeeded()
        for transition in result.transitions:
            self.metrics.transitions.labels(transition.status).inc()
            log.info(
                "transition.detected",
                model_id=transition.model_id,
                model_name=transition.model_name,
                status=transition.status,
                previous_status=transition.previous_status,
                transition_id=transition.id,
            )
        requests = self.requests - requests_before
        log.info(
            "poll.cycle",
            models=result.models,
            mode=result.mode,
            requests=requests,
            events=result.events_read,
            transitions=len(result.transitions),
            baseline=result.baseline,
            seconds=round(elapsed, 3),
        )
        budget = self._budget_per_cycle()
        if requests > budget and not result.baseline:
            log.warning(
                "poll.over_budget",
                requests=requests,
                budget=budget,
                max_requests_per_minute=self.settings.cohere.max_requests_per_minute,
                interval_s=self.settings.poll.interval_s,
                fix="cycles stretch to stay within the budget; raise poll.interval_s to keep to it",
            )
        if result.transitions:
            dispatcher.wake()
        failing = f"; {len(result.failed)} failing" if result.failed else ""
        self.systemd.notify(f"STATUS=watching {result.models} models{failing}; last poll ok")
        return result

    async def _poll_loop(self, poller: Poller, dispatcher: Dispatcher, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                if self._reloaded is not None:
                    # A reload that came during the cycle applies now, between two.
                    self._apply(self._reloaded, poller, dispatcher)
                    self._reloaded = None
                started = anyio.current_time()
                await self._cycle(poller, dispatcher)
                if self.fatal is not None:
                    return
                interval = self.settings.poll.interval_s
                elapsed = anyio.current_time() - started
                if elapsed > interval:
                    log.warning(
                        "poll.slow",
                        cycle_s=round(elapsed, 3),
                        interval_s=interval,
                        fix="raise poll.interval_s or cohere.max_requests_per_minute, or watch fewer models",
                    )
                # Sleep in short steps so the heartbeat shows an idle loop is alive.
                deadline = started + interval
                while (left := deadline - anyio.current_time()) > 0 and self._reloaded is None:
                    with anyio.move_on_after(min(left, 1.0)):
                        await self._wake_poll.wait()
                    self._wake_poll = anyio.Event()
                    self.health.beat()

    async def _watchdog(self, every_s: float) -> None:
        # Ping only while the loop's heartbeat is fresh: a stuck loop stops the pings
        # and systemd restarts the service.
        while True:
            if self.health.alive():
                self.systemd.notify("WATCHDOG=1")
            await anyio.sleep(every_s)

    async def _signals(
        self, context: NotifierContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self._reload(context)
                    continue
                # Keep listening: a second SIGTERM while the (bounded) grace period
                # runs must not kill the process before the outbox is saved.
                log.info("daemon.signal", signal=signal.Signals(signum).name, stopping=True)
                self._stop.set()

    def _reload(self, context: NotifierContext) -> None:
        """Read the configuration again now (a broken one is refused at once); the
        poll loop applies it between two cycles."""
        self.systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            settings, _ = load_settings(str(self.config_path) if self.config_path else None)
            build_notifiers(settings.notifiers, context)  # validated now, built when applied
        except ConfigError as exc:
            log.error("reload.failed", error=str(exc), note="the previous configuration stays in force")
            self.systemd.notify("READY=1")
            return
        self._context = context
        self._reloaded = settings
        self._wake_poll.set()

    def _apply(self, settings: Settings, poller: Poller, dispatcher: Dispatcher) -> None:
        """Apply what can change live; name every changed key that needs a restart."""
        restart = sorted(_changed(self.settings, settings, ("cohere", "state", "http")))
        if restart:
            log.warning("reload.restart_needed", keys=restart, note="these keep their old values until a restart")
        assert self._context is not None  # set with _reloaded
        try:
            notifiers = build_notifiers(settings.notifiers, self._context)
        except ConfigError as exc:  # a secret file that vanished since the signal
            log.error("reload.failed", error=str(exc), note="the previous configuration stays in force")
            self.systemd.notify("READY=1")
            return
        dispatcher.set_notifiers(notifiers)
        poller.models = list(dict.fromkeys(settings.poll.models))
        poller.mode = settings.poll.mode
        poller.reconcile_share = settings.poll.reconcile_share
        poller.concurrency = settings.poll.concurrency
        poller.lookback_ns = int(settings.poll.lookback_s * 1e9)
        poller.clock_skew_ns = int(settings.poll.clock_skew_s * 1e9)
        # Everything but [cohere], [state] and [http] is applied: keep the old values
        # of those three, so the restart-needed warning stays true.
        applied = sorted(_changed(self.settings, settings, ("poll", "delivery", "notifiers", "log_level")))
        self.settings = self.settings.model_copy(
            update={
                "poll": settings.poll,
                "delivery": settings.delivery,
                "notifiers": settings.notifiers,
                "log_level": settings.log_level,
            }
        )
        dispatcher.policy = self._policy()
        poller.budget_per_cycle = self._budget_per_cycle()
        self.health.interval_s = settings.poll.interval_s
        set_log_level(settings.log_level)
        log.info(
            "reload.done",
            applied=applied,
            models=len(poller.models) or "all",
            notifiers=[n.key for n in notifiers],
        )
        self.systemd.notify("READY=1")


def _changed(old: Settings, new: Settings, sections: Sequence[str]) -> set[str]:
    """Dotted names of the keys that differ between two configurations."""
    changed: set[str] = set()
    for section in sections:
        before, after = getattr(old, section), getattr(new, section)
        if before == after:
            continue
        if hasattr(before, "model_fields"):
            changed |= {
                f"{section}.{name}"
                for name in type(before).model_fields
                if getattr(before, name) != getattr(after, name)
            }
        else:
            changed.add(section)
    return changed
