"""``ftwatch run``: the poll loop with a dispatcher, the health server, signals, sd_notify.

One task group owns them all. SIGTERM/SIGINT stop the polling, give deliveries in
flight a short grace period, and leave everything else in the outbox. Errors that end
the daemon (a refused key, a port in use) propagate as exceptions; the CLI turns them
into one line and an exit code.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, assert_never

import anyio
import httpx
import structlog
from pydantic import BaseModel

from ftwatch import __version__
from ftwatch.app import wiring
from ftwatch.app.leadership import Leadership
from ftwatch.app.loop import PollLoop
from ftwatch.app.reload_sources import SourcesPlan, plan_sources
from ftwatch.app.signals import handle_signals
from ftwatch.clock import SYSTEM_CLOCK, Clock
from ftwatch.cycle import CycleReport, Failed, FailedAt, Polled, Standby
from ftwatch.dispatch import Dispatcher
from ftwatch.errors import ConfigError, FtwatchError
from ftwatch.fleet import SOURCE_MARK, Fleet
from ftwatch.notifiers.base import NotifierContext
from ftwatch.notifiers.registry import LoadedNotifier
from ftwatch.ops.fingerprint import NotifierShape, SourceShape, fingerprint
from ftwatch.ops.health import Health
from ftwatch.ops.logs import set_log_level
from ftwatch.ops.metrics import Metrics
from ftwatch.ops.sdnotify import SystemdNotifier
from ftwatch.poller import Poller
from ftwatch.settings import Settings, load_settings, source_specs
from ftwatch.sources.base import RequestDone, SourceSpec
from ftwatch.store.base import PollRequests, ReplicaRegistry, Store, StoreError
from ftwatch.wording import plural

__all__ = ["Daemon", "changed_keys"]

#: When the retention first runs after start, and how often after that.
RETENTION_FIRST_S = 1.0
RETENTION_EVERY_S = 3_600.0
#: How often a replica on a shared store publishes and compares its fingerprint.
REPLICA_EVERY_S = 5.0

log = structlog.get_logger("ftwatch.daemon")

#: Sections a reload cannot apply: the client, the state and the listener are built once.
_RESTART_SECTIONS = ("cohere", "state", "http")


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
        self.stdout = stdout if stdout is not None else sys.stdout
        self.environ = environ
        #: The one wall clock of every part (a test moves it on instead of sleeping).
        self.clock = clock
        self.metrics = Metrics(__version__, clock=clock)
        self.metrics.poll_interval.set(settings.poll.interval_s)
        self.health = Health(settings.poll.interval_s)
        self.systemd = SystemdNotifier(environ)
        self._stop = anyio.Event()
        self._reloaded: tuple[Settings, list[LoadedNotifier], SourcesPlan, dict[str, Poller]] | None = None
        #: Each running source's config, and the webhook config its route was built with.
        self._sources_in_force = {spec.name: spec.config for spec in source_specs(settings)}
        self._pushes_in_force = {spec.name: spec.webhook for spec in source_specs(settings)}
        #: Builds one source's poller as the daemon's own (set once the state is open).
        self._build_poller: Callable[[Settings, SourceSpec], Poller] | None = None
        self.leadership: Leadership | None = None
        #: The poll loop and the state, once they exist (a push before that is moot:
        #: the first cycle reads everything anyway).
        self._poll_loop: PollLoop | None = None
        self._store: Store | None = None

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
        if once or not self.settings.http.listen:
            await self._run(once=once)
            return
        # The health server comes first: while the state database is still down at
        # start, /readyz says so (503) and /healthz shows a live process.
        async with anyio.create_task_group() as group:
            await self._serve_http(group)
            await self._run(once=False)
            group.cancel_scope.cancel()

    async def _open_store(self, *, once: bool) -> Store:
        """A database that is only down is waited for (store.unreachable, once), the
        heartbeat going on; a wrong URL is exit 2 at once. A run --once gives up after a
        while, like a command."""
        self.health.failed("waiting for the state database")
        wait_s = self.settings.state.connect_timeout_s if once else math.inf
        async with anyio.create_task_group() as group:

            async def beat() -> None:
                while True:
                    self.health.beat()
                    await anyio.sleep(1.0)

            group.start_soon(beat)
            store = await anyio.to_thread.run_sync(
                functools.partial(wiring.open_store, self.settings, self.environ, connect_wait_s=wait_s)
            )
            group.cancel_scope.cancel()
        return store

    async def _run(self, *, once: bool) -> None:
        store = await self._open_store(once=once)
        try:
            async with wiring.api_client(self.settings) as api_http, wiring.hook_client() as hook_http:
                context = wiring.notifier_context(hook_http, self.stdout)
                notifiers = await anyio.to_thread.run_sync(wiring.notifiers, self.settings, context)
                dispatcher = wiring.build_dispatcher(
                    store,
                    self.settings,
                    on_attempt=self.metrics.delivery_attempt,
                    on_store_error=self.metrics.store_error,
                    clock=self.clock,
                )
                loop = self._loop(store, api_http, dispatcher)
                log.info(
                    "daemon.start",
                    version=__version__,
                    models=len(self.settings.poll.models) or "all",
                    notifiers=[n.key for n in notifiers],
                    state=store.where,
                    once=once,
                )
                if once:
                    await self._once(loop, dispatcher, notifiers)
                else:
                    await self._forever(loop, dispatcher, notifiers, context)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.close)

    def _loop(self, store: Store, api_http: httpx.AsyncClient, dispatcher: Dispatcher) -> PollLoop:
        # The loop counts the source's requests (for the budget warning), and the
        # source exists before the loop: the closures below run only once both do.
        loop: PollLoop  # bound below; the closures run only once it is

        def counted(request: RequestDone) -> None:
            loop.request_done(request)

        on_request = [self.metrics.request_done, self.health.request_done, counted]
        poller = wiring.build_fleet(
            self.settings,
            api_http,
            store,
            routes=lambda: wiring.routes_of(dispatcher.notifiers),
            daemon=True,
            on_request=on_request,
            on_wait=[self.health.api_wait],
            environ=self.environ,
            clock=self.clock,
        )

        def build_poller(settings: Settings, spec: SourceSpec) -> Poller:
            source = wiring.build_source_of(spec, settings, api_http, on_request, [self.health.api_wait], self.environ)
            routes = lambda: wiring.routes_of(dispatcher.notifiers)  # noqa: E731 - the same as the fleet's
            return wiring.build_poller(source, store, settings, spec=spec, routes=routes, daemon=True, clock=self.clock)

        self._build_poller = build_poller
        # Replicas on one shared store elect one poller; a file has one process anyway.
        self.leadership = Leadership(store, self.settings.state.lease_s) if store.shared else None
        if self.leadership is None:
            self.metrics.leader.set(1)  # the one process of its file polls: "no leader" never fires
        relay = store if isinstance(store, PollRequests) and store.shared and _pushing(self.settings) else None
        loop = PollLoop(
            poller,
            interval_s=self.settings.poll.interval_s,
            health=self.health,
            subscribers=[self.metrics.cycle_done, self.health.cycle_done, self._status, _wake(dispatcher)],
            limits=wiring.source_limits(self.settings),
            before_cycle=lambda: self._apply_reload(poller, dispatcher, loop),
            leadership=self.leadership,
            asked_elsewhere=(lambda: anyio.to_thread.run_sync(relay.take_poll_asks)) if relay is not None else None,
        )
        self._poll_loop, self._store = loop, store
        return loop

    def _status(self, report: CycleReport) -> None:
        """sd_notify's STATUS= and the leadership gauges, after every cycle."""
        if self.leadership is not None:
            leading = self.leadership.leading
            self.metrics.leader.set(1 if leading else 0)
            if self.leadership.term is not None:
                self.metrics.leader_term.set(self.leadership.term)
            self.health.role = "leader" if leading else "standby"
        match report:
            case Standby():
                self.systemd.notify("STATUS=standby: another replica polls")
            case Failed(error=error, failed_at=failed_at):
                what = "the state cannot be written" if failed_at is FailedAt.STORE else "the API cannot be polled"
                self.systemd.notify(f"STATUS={what}: {error[:200]}")
            case Polled(findings=found):
                failing = f"; {len(found.failed)} failing" if found.failed else ""
                self.systemd.notify(f"STATUS=watching {plural(found.models, 'model')}{failing}; last poll ok")
            case unexpected:
                assert_never(unexpected)

    async def _once(self, loop: PollLoop, dispatcher: Dispatcher, notifiers: list[LoadedNotifier]) -> None:
        dispatcher.set_notifiers(notifiers)
        try:
            report = await loop.cycle()
        finally:
            if self.leadership is not None:
                await self.leadership.release()  # the next run, or a replica, need not wait it out
        # What earlier runs left undelivered goes out even when this poll failed.
        failed = await dispatcher.deliver_due(notifiers)
        if failed:
            log.warning("once.undelivered", notifiers_failed=failed, note="kept in the outbox for the next run")
        if isinstance(report, Failed):
            # A cron job should hear that this run saw nothing: exit 1, one line.
            # Every source failed: each is named (the error is the first one's).
            names = ", ".join(loop.poller.names)
            raise FtwatchError(f"the API could not be polled: source {names}: {report.error}; nothing was lost")
        down = {
            key.removeprefix(SOURCE_MARK): why
            for key, why in (report.findings.failed if isinstance(report, Polled) else {}).items()
            if key.startswith(SOURCE_MARK)
        }
        if down:
            # One provider down is no success for a cron job either: exit 1, each named.
            named = "; ".join(f"{name}: {why}" for name, why in down.items())
            raise FtwatchError(f"could not poll {len(down)} of the sources ({named}); the others were polled")

    async def _forever(
        self, loop: PollLoop, dispatcher: Dispatcher, notifiers: list[LoadedNotifier], context: NotifierContext
    ) -> None:
        async with anyio.create_task_group() as group:
            poll_scope = anyio.CancelScope()

            async def stop() -> None:
                # Bounded and shielded: in-flight deliveries get the grace period, the
                # outbox keeps the rest; then the whole group goes.
                poll_scope.cancel()
                if self.leadership is not None:
                    await self.leadership.release()  # a standby takes over at once
                self.systemd.notify("STOPPING=1")
                grace = self.settings.delivery.shutdown_grace_s
                log.info("daemon.stopping", grace_s=grace)
                with anyio.CancelScope(shield=True), anyio.move_on_after(grace + 1.0):
                    await dispatcher.stop(grace)
                group.cancel_scope.cancel()

            async def reload() -> None:
                await self._reload(context, loop)

            await group.start(handle_signals, stop, reload)  # handlers in place before READY=1

            async def stop_when_asked() -> None:
                await self._stop.wait()
                await stop()

            group.start_soon(stop_when_asked)
            group.start_soon(dispatcher.run, notifiers)
            group.start_soon(self._outbox_gauges, dispatcher)
            if self.settings.state.retention > 0:
                group.start_soon(self._retention, dispatcher.store, self.settings.state.retention)
            if self.leadership is not None:
                group.start_soon(self.leadership.keep)
                if isinstance(dispatcher.store, ReplicaRegistry):
                    group.start_soon(self._compare_replicas, dispatcher, self.leadership, dispatcher.store)
            if self.systemd.watchdog_interval_s is not None:
                group.start_soon(self._watchdog, self.systemd.watchdog_interval_s)
            # Ready once the loop runs: an API that is down at boot shows in STATUS=
            # and /readyz; withholding READY=1 would turn it into a restart loop.
            self.systemd.notify("READY=1", "STATUS=started; first poll under way")

            async def poll() -> None:
                with poll_scope:
                    await loop.run()

            group.start_soon(poll)
        log.info("daemon.stopped")

    async def _serve_http(self, group: anyio.abc.TaskGroup) -> None:
        from ftwatch.ops.endpoints import health_app  # noqa: PLC0415 - starlette only when serving
        from ftwatch.ops.http import quiet_accept_errors, raise_open_files_limit  # noqa: PLC0415
        from ftwatch.ops.push import push_routes  # noqa: PLC0415
        from ftwatch.serving import bind_socket, serve_asgi  # noqa: PLC0415 - hypercorn likewise

        host, _, port = self.settings.http.listen.rpartition(":")
        raise_open_files_limit()
        quiet_accept_errors()
        try:
            sock = bind_socket(host, int(port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.settings.http.listen}: {exc.strerror}; "
                'change [http] listen (or "" to turn it off)'
            ) from None
        bound = sock.getsockname()[1]
        pushes = await anyio.to_thread.run_sync(_push_secrets, self.settings)
        routes = push_routes(
            pushes, self._pushed, lambda source, outcome: self.metrics.pushes.labels(source, outcome).inc()
        )
        await group.start(serve_asgi, health_app(self.health, self.metrics, routes), sock)
        log.info("http.listening", address=f"{host}:{bound}")

    async def _pushed(self, source: str, job_id: str) -> bool:
        """A provider said a job ended: poll that source soon rather than at the
        interval's end. False: the source does not watch that job. A replica that
        does not lead hands the push to the leader through the shared store."""
        loop, store = self._poll_loop, self._store
        if loop is None:
            return True
        poller = loop.poller.poller(source)
        if poller is not None and poller.models and job_id not in poller.models:
            return False
        if self.leadership is not None and not self.leadership.leading and isinstance(store, PollRequests):
            try:
                await anyio.to_thread.run_sync(store.ask_poll, source)
            except StoreError as exc:
                self.metrics.store_error("ask_poll")
                log.warning("push.relay_failed", source=source, error=str(exc), note="the leader polls at its interval")
        else:
            loop.poll_soon(source)
        return True

    async def _retention(self, store: Store, keep_s: float) -> None:
        """Remove delivered rows older than ``[state] retention``: soon after start,
        then hourly (on a shared store, by the leader only), so the state stops growing."""
        await anyio.sleep(RETENTION_FIRST_S)
        while True:
            if self.leadership is None or self.leadership.leading:
                try:
                    removed = await anyio.to_thread.run_sync(store.purge, self.clock.now() - keep_s)
                except StoreError as exc:
                    self.metrics.store_error("purge")
                    log.warning("store.failed", operation="purge", error=str(exc), note="tried again in an hour")
                else:
                    if removed:
                        log.info("outbox.purged", removed=removed, retention_s=keep_s)
            await anyio.sleep(RETENTION_EVERY_S)

    async def _outbox_gauges(self, dispatcher: Dispatcher) -> None:
        """Keep the outbox gauges fresh from a worker thread: a scrape never touches
        the state file, so a locked file cannot stall /metrics."""
        warned: set[str] = set()
        while True:
            try:
                pending = await anyio.to_thread.run_sync(dispatcher.store.count_deliveries)
                oldest = await anyio.to_thread.run_sync(dispatcher.store.oldest_pending_age, self.clock.now())
            except StoreError as exc:
                self.metrics.store_error("count_deliveries")
                log.warning("store.failed", operation="count_deliveries", error=str(exc))
            else:
                configured = {n.key for n in dispatcher.notifiers}
                self.metrics.outbox(pending, configured)
                self.metrics.oldest_pending.set(oldest or 0.0)
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

    async def _compare_replicas(self, dispatcher: Dispatcher, leadership: Leadership, store: ReplicaRegistry) -> None:
        """Publish what this replica watches, every few seconds, and compare it with
        the leader's: replicas that disagree (a rolling deploy adding a source) are
        a warning, a metric and a line in /readyz, not silence."""
        told: str | None = None
        while True:
            own = config_fingerprint(self.settings, dispatcher.notifiers)
            try:
                view = await anyio.to_thread.run_sync(
                    store.publish_fingerprint, leadership.holder, own, self.clock.now()
                )
            except StoreError as exc:
                self.metrics.store_error("publish_fingerprint")
                log.debug("replica.publish_failed", error=str(exc))
            else:
                theirs = view.fingerprints.get(view.leader) if view.leader else None
                differs = theirs is not None and theirs != own
                self.metrics.config_differs.set(1 if differs else 0)
                if differs:
                    self.health.config = f"differs from the leader's: this replica {own}, the leader {theirs}"
                    if told != theirs:
                        log.warning(
                            "replica.config_differs",
                            fingerprint=own,
                            leader_fingerprint=theirs,
                            leader=view.leader,
                            note="the leader's [[sources]] and notifiers decide what is watched and sent",
                            fix="give every replica the same configuration (a rolling deploy ends so)",
                        )
                        told = theirs
                else:
                    self.health.config = f"same as the leader's ({own})" if theirs else f"{own} (no leader seen)"
                    if told is not None:
                        log.info("replica.config_matches", fingerprint=own)
                    told = None
            await anyio.sleep(REPLICA_EVERY_S)

    async def _watchdog(self, every_s: float) -> None:
        # Ping only while the loop's heartbeat is fresh: a stuck loop stops the pings
        # and systemd restarts the service.
        while True:
            if self.health.alive():
                self.systemd.notify("WATCHDOG=1")
            await anyio.sleep(every_s)

    async def _reload(self, context: NotifierContext, loop: PollLoop) -> None:
        """SIGHUP: read and build the new configuration now, off the loop (a broken one
        is refused at once); the poll loop applies it between two cycles."""
        self.systemd.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        path = str(self.config_path) if self.config_path else None
        try:
            settings, _ = await anyio.to_thread.run_sync(load_settings, path)
            notifiers = await anyio.to_thread.run_sync(wiring.notifiers, settings, context)
            plan = plan_sources(
                self._sources_in_force, self._pushes_in_force, source_specs(settings), legacy=settings.cohere
            )
            # The new and changed sources are built here, off the loop (their keys read).
            built = await anyio.to_thread.run_sync(self._build_sources, settings, plan)
        except ConfigError as exc:
            log.error("reload.failed", error=str(exc), note="the previous configuration stays in force")
            self.systemd.notify("READY=1")
            return
        self._reloaded = (settings, notifiers, plan, built)
        loop.wake()

    def _build_sources(self, settings: Settings, plan: SourcesPlan) -> dict[str, Poller]:
        assert self._build_poller is not None
        specs = {spec.name: spec for spec in source_specs(settings)}
        return {name: self._build_poller(settings, specs[name]) for name in plan.to_build}

    def _swap_sources(self, fleet: Fleet, settings: Settings, plan: SourcesPlan, built: dict[str, Poller]) -> None:
        """Start, stop and restart the pollers the plan names; the others go on."""
        if not (plan.added or plan.removed or plan.restarted):
            return
        running = {poller.name: poller for poller in fleet.pollers}
        specs = source_specs(settings)
        fleet.swap([built.get(spec.name) or running[spec.name] for spec in specs])
        self._sources_in_force = {spec.name: spec.config for spec in specs}
        self.metrics.source_up.clear()  # a removed source's series goes; the next cycle sets the rest
        log.info(
            "reload.sources",
            added=list(plan.added),
            removed=list(plan.removed),
            restarted=list(plan.restarted),
        )

    def _apply_reload(self, poller: Fleet, dispatcher: Dispatcher, loop: PollLoop) -> None:
        """Hand the new settings to each part; whatever changed and none applied needs
        a restart, and is named."""
        if self._reloaded is None:
            return
        settings, notifiers, plan, built = self._reloaded
        self._reloaded = None
        self._swap_sources(poller, settings, plan, built)
        applied = (
            wiring.reconfigure(poller, dispatcher, settings, notifiers) | loop.reconfigure(settings) | {"log_level"}
        )
        self.health.reconfigure(settings.poll.interval_s)
        set_log_level(settings.log_level)
        self.metrics.poll_interval.set(settings.poll.interval_s)
        changed = changed_keys(self.settings, settings)
        # [[sources]] tables apply (above), but for what the plan names: precisely,
        # on every reload until a restart.
        applied |= {"sources"}
        restart = sorted(changed - applied) + list(plan.restart_needed)
        if restart:
            log.warning("reload.restart_needed", keys=restart, note="these keep their old values until a restart")
        # What needs a restart keeps its old value, so the warning stays true.
        kept = {section: getattr(self.settings, section) for section in _RESTART_SECTIONS}
        self.settings = settings.model_copy(update=kept)
        log.info(
            "reload.done",
            applied=sorted(changed & applied),
            models=len(poller.models) or "all",
            notifiers=[n.key for n in notifiers],
        )
        self.systemd.notify("READY=1")


def config_fingerprint(settings: Settings, notifiers: Sequence[LoadedNotifier]) -> str:
    """This configuration's fingerprint (see :mod:`ftwatch.ops.fingerprint`)."""
    return fingerprint(
        [
            SourceShape(spec.name, spec.type, tuple(spec.models), spec.webhook is not None)
            for spec in source_specs(settings)
        ],
        [NotifierShape(n.key, tuple(n.config.statuses), tuple(n.config.models)) for n in notifiers],
    )


def _pushing(settings: Settings) -> bool:
    return any(spec.webhook is not None for spec in source_specs(settings))


def _push_secrets(settings: Settings) -> dict[str, str]:
    """Each source that takes webhooks, by name -> its signing secret (files read)."""
    secrets = {}
    for spec in source_specs(settings):
        push = spec.webhook
        if push is not None:
            secrets[spec.name] = push.read_secret()
    return secrets


def _wake(dispatcher: Dispatcher) -> Callable[[CycleReport], None]:
    def wake(report: CycleReport) -> None:
        if isinstance(report, Polled) and report.findings.transitions:
            dispatcher.wake()

    return wake


def changed_keys(old: Settings, new: Settings) -> set[str]:
    """Dotted names of the keys that differ between two configurations."""
    changed: set[str] = set()
    for name in type(old).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if isinstance(before, BaseModel) and isinstance(after, BaseModel):
            changed |= {
                f"{name}.{key}" for key in type(before).model_fields if getattr(before, key) != getattr(after, key)
            }
        else:
            changed.add(name)
    return changed
