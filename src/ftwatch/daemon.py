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

from ftwatch import __version__
from ftwatch.asgi_server import bind_socket, serve_asgi
from ftwatch.dispatch import Dispatcher
from ftwatch.errors import AuthRefusedError, ConfigError, FtwatchError
from ftwatch.health import Health, health_app
from ftwatch.metrics import Metrics
from ftwatch.notifiers import LoadedNotifier, NotifierContext, build_notifiers
from ftwatch.outbox import RetryPolicy, Route
from ftwatch.poller import CycleResult, Poller
from ftwatch.ratelimit import RateLimiter
from ftwatch.sdnotify import SystemdNotifier
from ftwatch.settings import KeySource, Settings, load_settings
from ftwatch.source import CohereSource, SourceError
from ftwatch.store import Store

__all__ = ["Daemon", "api_client", "make_source", "routes_of"]

log = structlog.get_logger("ftwatch.daemon")


def routes_of(notifiers: Sequence[LoadedNotifier]) -> list[Route]:
    return [Route(n.key, frozenset(n.config.statuses), frozenset(n.config.models)) for n in notifiers]


def api_client(settings: Settings) -> httpx.AsyncClient:
    concurrency = settings.poll.concurrency
    return httpx.AsyncClient(
        timeout=settings.cohere.timeout_s,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
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
        self._ready_sent = False

    def stop(self) -> None:
        """Stop as SIGTERM would."""
        self._stop.set()

    async def run(self, *, once: bool = False) -> None:
        store = Store(self.settings.state_path())
        self.metrics.track_pending(lambda: sum(store.count_deliveries().values()))
        try:
            async with api_client(self.settings) as api_http, httpx.AsyncClient(timeout=10.0) as hook_http:
                context = NotifierContext(http=hook_http, stdout=self.stdout)
                notifiers = build_notifiers(self.settings.notifiers, context)
                source = make_source(api_http, self.settings, self.metrics, self.health, self._count_request)
                dispatcher = Dispatcher(store, self._policy(), observer=self.metrics.notification)
                poller = Poller(
                    source,
                    store,
                    models=self.settings.poll.models,
                    routes=lambda: routes_of(dispatcher.notifiers),
                    concurrency=self.settings.poll.concurrency,
                    reconcile_share=self.settings.poll.reconcile_share,
                    budget_per_cycle=self._budget_per_cycle(),
                    mode=self.settings.poll.mode,
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
            store.close()
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
            group.start_soon(self._signals, poller, dispatcher, context)
            group.start_soon(dispatcher.run, notifiers)
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
            poll_scope = anyio.CancelScope()
            group.start_soon(self._poll_loop, poller, dispatcher, poll_scope)
            await self._stop.wait()
            poll_scope.cancel()
            self.systemd.notify("STOPPING=1")
            log.info("daemon.stopping", grace_s=self.settings.delivery.shutdown_grace_s)
            await dispatcher.stop(self.settings.delivery.shutdown_grace_s)
            group.cancel_scope.cancel()
        log.info("daemon.stopped")

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
            return None
        elapsed = anyio.current_time() - started
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
        if not self._ready_sent:
            self._ready_sent = True
            self.systemd.notify("READY=1", f"STATUS=watching {result.models} models")
        else:
            self.systemd.notify(f"STATUS=watching {result.models} models; last poll ok")
        return result

    async def _poll_loop(self, poller: Poller, dispatcher: Dispatcher, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
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
                while (left := deadline - anyio.current_time()) > 0:
                    await anyio.sleep(min(left, 1.0))
                    self.health.beat()

    async def _watchdog(self, every_s: float) -> None:
        # Ping only while the loop's heartbeat is fresh: a stuck loop stops the pings
        # and systemd restarts the service.
        while True:
            if self.health.alive():
                self.systemd.notify("WATCHDOG=1")
            await anyio.sleep(every_s)

    async def _signals(self, poller: Poller, dispatcher: Dispatcher, context: NotifierContext) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self._reload(poller, dispatcher, context)
                    continue
                # Keep listening: a second SIGTERM while the (bounded) grace period
                # runs must not kill the process before the outbox is saved.
                log.info("daemon.signal", signal=signal.Signals(signum).name, stopping=True)
                self._stop.set()

    def _reload(self, poller: Poller, dispatcher: Dispatcher, context: NotifierContext) -> None:
        self.systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            settings, _ = load_settings(str(self.config_path) if self.config_path else None)
            notifiers = build_notifiers(settings.notifiers, context)
        except ConfigError as exc:
            log.error("reload.failed", error=str(exc), note="the previous configuration stays in force")
            self.systemd.notify("READY=1")
            return
        if settings.cohere != self.settings.cohere or settings.state != self.settings.state:
            log.warning("reload.restart_needed", note="[cohere], [state] and [http] changes apply after a restart")
        dispatcher.set_notifiers(notifiers)
        poller.models = list(dict.fromkeys(settings.poll.models))
        poller.mode = settings.poll.mode
        poller.reconcile_share = settings.poll.reconcile_share
        self.settings = self.settings.model_copy(update={"poll": settings.poll, "notifiers": settings.notifiers})
        poller.budget_per_cycle = self._budget_per_cycle()
        self.health.interval_s = settings.poll.interval_s
        log.info("reload.done", models=len(poller.models) or "all", notifiers=[n.key for n in notifiers])
        self.systemd.notify("READY=1")
