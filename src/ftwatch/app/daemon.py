"""``ftwatch run``: one task group for the poll loop, the dispatcher, the health
server, the signals and the housekeeping, over the parts the wiring builds.

SIGTERM/SIGINT stop the polling, give deliveries in flight a short grace period, and
leave everything else in the outbox. Errors that end the daemon (a refused key, a
port in use) propagate as exceptions; the CLI turns them into one line and an exit
code. What each part does is its own module's: :func:`ftwatch.app.wiring.build_runtime`
composes them, :mod:`ftwatch.app.reload` reloads them, :mod:`ftwatch.ops.housekeeping`
and :mod:`ftwatch.ops.service` keep the state and the service manager informed.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import anyio
import anyio.abc
import httpx
import structlog

from ftwatch import __version__
from ftwatch.app import wiring
from ftwatch.app.pushes import PushIntake
from ftwatch.app.reload import Reloader
from ftwatch.app.signals import handle_signals
from ftwatch.clock import SYSTEM_CLOCK, Clock
from ftwatch.cycle import Failed, Polled
from ftwatch.errors import FtwatchError
from ftwatch.pollers import SOURCE_MARK
from ftwatch.settings import Settings, source_specs

__all__ = ["Daemon"]

log = structlog.get_logger("ftwatch.daemon")


class Daemon:
    """Everything ``ftwatch run`` runs, for one configuration (reloadable)."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None,
        *,
        stdout: IO[str] | None = None,
        environ: Mapping[str, str] = os.environ,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        #: The stdout notifier's stream: the process's as it is now (a caller may
        #: have redirected it), unless one is given.
        self.stdout = stdout
        self.environ = environ
        self.observers = wiring.Observers.of(settings.poll.interval_s, environ, clock)
        #: Pushes wait for the runtime: one before it exists is moot (the first cycle
        #: reads everything anyway).
        self.pushes = PushIntake(self.observers.metrics)
        self._stop = anyio.Event()

    def stop(self) -> None:
        """Stop as SIGTERM would."""
        self._stop.set()

    async def run(self, *, once: bool = False) -> None:
        pushing = [s.name for s in source_specs(self.settings) if s.webhook is not None]
        if pushing and not once and not self.settings.http.listen:
            log.warning(
                "push.off",
                sources=pushing,
                note="webhooks are not received: [http] listen is off; polling goes on",
                fix='set [http] listen (e.g. "0.0.0.0:9464") to take them',
            )
        # The clients first: their TLS contexts need a few files, which a flood of
        # connections to the port must not have taken yet.
        async with wiring.api_client(self.settings) as api_http, wiring.hook_client() as hook_http:
            if once or not self.settings.http.listen:
                await self._run(api_http, hook_http, once=once)
                return
            # The health server comes next: while the state database is still down at
            # start, /readyz says so (503) and /healthz shows a live process.
            async with anyio.create_task_group() as group:
                await self._serve_http(group)
                await self._run(api_http, hook_http, once=False)
                group.cancel_scope.cancel()

    async def _run(self, api_http: httpx.AsyncClient, hook_http: httpx.AsyncClient, *, once: bool) -> None:
        store = await wiring.open_store_patiently(self.settings, self.environ, self.observers.health, once=once)
        try:
            context = wiring.notifier_context(hook_http, self.stdout or sys.stdout)
            notifiers = await anyio.to_thread.run_sync(wiring.load_notifiers, self.settings, context)
            runtime = wiring.build_runtime(
                self.settings,
                self.observers,
                store,
                wiring.ApiAccess(api_http, environ=self.environ),
                context=context,
                notifiers=notifiers,
            )
            self.pushes.runtime = runtime
            log.info(
                "daemon.start",
                version=__version__,
                models=len(self.settings.poll.models) or "all",
                notifiers=[n.key for n in notifiers],
                state=store.where,
                once=once,
            )
            # What start-up built (modules, settings, the runtime) lives as long as the
            # process: out of the collector's sight, its full passes walk only what the
            # cycles make, a third of the time with 2,000 jobs (bench/progress.py).
            gc.freeze()
            await (self._once(runtime) if once else self._forever(runtime))
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.close)

    async def _once(self, runtime: wiring.Runtime) -> None:
        runtime.dispatcher.set_notifiers(runtime.notifiers)
        try:
            report = await runtime.loop.cycle()
        finally:
            if runtime.leadership is not None:
                await runtime.leadership.release()  # the next run, or a replica, need not wait it out
        # What earlier runs left undelivered goes out even when this poll failed.
        failed = await runtime.dispatcher.deliver_due(runtime.notifiers)
        if failed:
            log.warning("once.undelivered", notifiers_failed=failed, note="kept in the outbox for the next run")
        if isinstance(report, Failed):
            # A cron job should hear that this run saw nothing: exit 1, one line.
            # Every source failed: each is named (the error is the first one's).
            names = ", ".join(runtime.group.names)
            raise FtwatchError(f"the API could not be polled: source {names}: {report.error}; nothing was lost")
        found = report.findings.failed if isinstance(report, Polled) else {}
        down = {key.removeprefix(SOURCE_MARK): why for key, why in found.items() if key.startswith(SOURCE_MARK)}
        if down:
            # One provider down is no success for a cron job either: exit 1, each named.
            named = "; ".join(f"{name}: {why}" for name, why in down.items())
            raise FtwatchError(f"could not poll {len(down)} of the sources ({named}); the others were polled")

    async def _forever(self, runtime: wiring.Runtime) -> None:
        systemd, leadership, dispatcher = runtime.observers.systemd, runtime.leadership, runtime.dispatcher
        reloader = Reloader(runtime, self.config_path, runtime.build_poller)
        runtime.loop.before_cycle = reloader.apply
        async with anyio.create_task_group() as group:
            poll_scope = anyio.CancelScope()

            async def stop() -> None:
                # Bounded and shielded: in-flight deliveries get the grace period, the
                # outbox keeps the rest; then the whole group goes.
                poll_scope.cancel()
                if leadership is not None:
                    await leadership.release()  # a standby takes over at once
                systemd.notify("STOPPING=1")
                grace = runtime.settings.delivery.shutdown_grace_s
                log.info("daemon.stopping", grace_s=grace)
                with anyio.CancelScope(shield=True), anyio.move_on_after(grace + 1.0):
                    await dispatcher.stop(grace)
                group.cancel_scope.cancel()

            await group.start(handle_signals, stop, reloader.load)  # handlers in place before READY=1

            async def stop_when_asked() -> None:
                await self._stop.wait()
                await stop()

            group.start_soon(stop_when_asked)
            group.start_soon(dispatcher.run, runtime.notifiers)
            wiring.start_housekeeping(group, runtime)
            # Ready once the loop runs: an API that is down at boot shows in STATUS=
            # and /readyz; withholding READY=1 would turn it into a restart loop.
            systemd.notify("READY=1", "STATUS=started; first poll under way")

            async def poll() -> None:
                with poll_scope:
                    await runtime.loop.run()

            group.start_soon(poll)
        log.info("daemon.stopped")

    async def _serve_http(self, group: anyio.abc.TaskGroup) -> None:
        from ftwatch.ops.endpoints import health_app, serve_endpoints  # noqa: PLC0415 - starlette only when serving
        from ftwatch.ops.push import push_routes  # noqa: PLC0415

        secrets = await anyio.to_thread.run_sync(wiring.push_secrets, self.settings)
        metrics = self.observers.metrics
        routes = push_routes(secrets, self.pushes, lambda source, outcome: metrics.pushes.labels(source, outcome).inc())
        board = self.observers.board if self.settings.http.ui else None
        app = health_app(self.observers.health, metrics, routes, board)
        await serve_endpoints(group, self.settings.http.listen, app)
