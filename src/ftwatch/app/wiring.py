"""Building the application from :class:`~ftwatch.settings.Settings`, in one place.

Every command (``run``, ``watch``, ``demo``, ``events``, ``models``, ``notify-test``,
``check-config``, ``migrate``) and the tests get their HTTP clients, key provider,
source, store, poller, notifiers and dispatcher from here, so they are all built the
same way, with the same parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

import anyio
import anyio.abc
import httpx

from ftwatch.app.loop import PollLoop, Replicas, RequestTally
from ftwatch.clock import SYSTEM_CLOCK, Clock
from ftwatch.cycle import CycleReport, Polled
from ftwatch.dispatch import DeliveryAttempt, Dispatcher
from ftwatch.errors import ConfigError
from ftwatch.leadership import Leadership
from ftwatch.notifiers.base import NotifierContext
from ftwatch.notifiers.registry import LoadedNotifier, build_notifiers
from ftwatch.ops.fingerprint import NotifierShape, SourceShape, fingerprint
from ftwatch.ops.health import Health
from ftwatch.ops.housekeeping import Housekeeping
from ftwatch.ops.observers import Observers
from ftwatch.ops.service import ServiceStatus
from ftwatch.outbox import RetryPolicy, Route
from ftwatch.plan import PlanConfig
from ftwatch.poller import Poller, PollerConfig
from ftwatch.pollers import PollerGroup
from ftwatch.ratelimit import RateLimiter
from ftwatch.secrets import FileSecret, SecretProvider, cohere_key
from ftwatch.settings import Settings, cycle_budget, default_state_path, redact_url, request_limits, source_specs
from ftwatch.sources.base import ApiWait, RequestDone, Source, SourceContext, SourceSpec
from ftwatch.sources.protocol import ChecksCredentials
from ftwatch.sources.registry import source_type
from ftwatch.state import SourceIdentity
from ftwatch.statuses import status_filter
from ftwatch.store.base import PollRequests, ReplicaRegistry, Store

__all__ = [
    "ApiAccess",
    "Observers",
    "Role",
    "Runtime",
    "api_client",
    "budget_per_cycle",
    "build_dispatcher",
    "build_poller",
    "build_poller_group",
    "build_runtime",
    "build_source",
    "build_sources",
    "check_credentials",
    "config_fingerprint",
    "hook_client",
    "key_provider",
    "load_notifiers",
    "memory_store",
    "notifier_context",
    "open_store",
    "open_store_patiently",
    "poller_config",
    "push_secrets",
    "pushing",
    "reconfigure",
    "retry_policy",
    "routes_of",
    "start_housekeeping",
    "state_path",
]

_T = TypeVar("_T")

#: Connections the API client may hold: the most ``poll.concurrency`` allows, so a
#: reload can raise the concurrency without a new client (the limiter bounds it).
_MAX_CONNECTIONS = 64
#: Timeout of one delivery attempt to a receiver.
_HOOK_TIMEOUT_S = 10.0


def state_path(settings: Settings, environ: Mapping[str, str] = os.environ) -> Path:
    """``[state] path``, else ``$STATE_DIRECTORY/ftwatch.db``, else ``./ftwatch-state.db``."""
    return settings.state.path if settings.state.path is not None else default_state_path(environ)


_POSTGRES_EXTRA = "[state] url needs PostgreSQL support: pip install 'ftwatch[postgres]'"


def state_url(settings: Settings) -> str | None:
    """``[state] url``, or the URL in ``[state] url_file`` (read by a provider)."""
    if settings.state.url_file is not None:
        return FileSecret(settings.state.url_file, "the state database URL (state.url_file)").read().get_secret_value()
    return settings.state.url.get_secret_value() if settings.state.url is not None else None


def open_store(
    settings: Settings,
    environ: Mapping[str, str] = os.environ,
    *,
    connect_wait_s: float | None = None,
    beside_daemon: bool = False,
) -> Store:
    """The state: PostgreSQL when ``[state] url`` is set, else the SQLite file
    (blocking: call it from a worker thread in async code). ``connect_wait_s``: how
    long to wait for a database server that refuses connections (default ``[state]
    connect_timeout_s``; the daemon waits as long as it takes: exiting would not bring
    the server up). ``beside_daemon``: for
    the operator's commands, which work on the state while ``run`` has it open."""
    url = state_url(settings)
    if url is not None:
        try:
            from ftwatch.store.postgres import PostgresStore  # noqa: PLC0415 - the optional extra
        except ImportError:
            raise ConfigError(_POSTGRES_EXTRA) from None
        wait_s = settings.state.connect_timeout_s if connect_wait_s is None else connect_wait_s
        return PostgresStore(url, where=redact_url(url), connect_wait_s=wait_s)
    from ftwatch.store.sqlite import SqliteStore  # noqa: PLC0415 - sqlite3 only for commands with state

    return SqliteStore(
        state_path(settings, environ), busy_timeout_s=settings.state.busy_timeout_s, beside_daemon=beside_daemon
    )


def memory_store() -> Store:
    """A state of its own, in memory, for the live view: it never touches a file."""
    from ftwatch.store.sqlite import SqliteStore  # noqa: PLC0415

    return SqliteStore(Path(":memory:"))


def api_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=settings.cohere.timeout_s,
        limits=httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_CONNECTIONS),
    )


def hook_client() -> httpx.AsyncClient:
    """The client notifiers deliver with (receivers are not the API: their own pool)."""
    return httpx.AsyncClient(timeout=_HOOK_TIMEOUT_S)


def key_provider(settings: Settings, environ: Mapping[str, str] = os.environ) -> SecretProvider:
    return cohere_key(settings.cohere.api_key_file, environ)


def _fan_out(*callbacks: Callable[[_T], None] | None) -> Callable[[_T], None]:
    chosen = [callback for callback in callbacks if callback is not None]

    def call(value: _T) -> None:
        for callback in chosen:
            callback(value)

    return call


@dataclasses.dataclass(frozen=True, slots=True)
class ApiAccess:
    """How the sources built from the settings reach their APIs: the one client they
    share, who hears of each request and each wait the API asked for, and the
    environment their keys are read from."""

    http: httpx.AsyncClient
    on_request: Sequence[Callable[[RequestDone], None]] = ()
    on_wait: Sequence[Callable[[ApiWait], None]] = ()
    environ: Mapping[str, str] = dataclasses.field(default_factory=lambda: os.environ)


def build_sources(settings: Settings, access: ApiAccess) -> list[tuple[SourceSpec, Source]]:
    """Every configured source, through the registry, each with its API's one
    process-wide request budget (its keys read: blocking, and a missing one is a
    :class:`ConfigError`)."""
    specs = source_specs(settings)
    return [(spec, build_source_of(spec, settings, access, alone=len(specs) == 1)) for spec in specs]


def build_source_of(spec: SourceSpec, settings: Settings, access: ApiAccess, *, alone: bool = False) -> Source:
    """One configured source, with its API's request budget (its key read: blocking)."""
    deps = SourceContext(
        http=access.http,
        # [cohere] keeps its own key lookup; a [[sources]] table finds its own.
        key=key_provider(settings, access.environ) if spec.config is settings.cohere else None,
        limiter=RateLimiter(spec.config.max_requests_per_minute),
        on_request=_from_source(spec.name, _fan_out(*access.on_request)),
        on_wait=_from_source(spec.name, _fan_out(*access.on_wait)),
        environ=access.environ,
    )
    try:
        return source_type(spec.type).from_config(spec.config, deps)
    except ConfigError as exc:
        if alone:
            raise
        raise ConfigError(f"source {spec.name!r}: {exc}") from None


_Told = TypeVar("_Told", RequestDone, ApiWait)


def _from_source(name: str, tell: Callable[[_Told], None]) -> Callable[[_Told], None]:
    """``tell``, with each report stamped with the source that made it."""
    return lambda report: tell(dataclasses.replace(report, source=name))


def check_credentials(settings: Settings, environ: Mapping[str, str] = os.environ) -> None:
    """Every source's key read (and Bedrock's credential chain resolved) now, so a
    missing one is exit 2 before anything starts (blocking)."""
    if not settings.sources:
        key_provider(settings, environ).read()
        return
    # Built only to read their keys: no request is made with this client, and it is
    # closed (called before any event loop runs: one is run just for that).
    http = httpx.AsyncClient()
    try:
        for _, source in build_sources(settings, ApiAccess(http, environ=environ)):
            if isinstance(source, ChecksCredentials):
                source.check_credentials()
    finally:
        anyio.run(http.aclose)


def build_source(settings: Settings, access: ApiAccess, *, name: str | None = None) -> Source:
    """One configured source: the one named, else the first."""
    specs = source_specs(settings)
    names = [spec.name for spec in specs]
    if name is not None and name not in names:
        raise ConfigError(f"no source named {name!r}; configured: {', '.join(names)}")
    chosen = [spec for spec in specs if spec.name == (name or names[0])]
    one = settings.model_copy(update={"sources": [chosen[0].config]}) if settings.sources else settings
    return build_sources(one, access)[0][1]


def budget_per_cycle(settings: Settings, spec: SourceSpec | None = None) -> int:
    """Requests one cycle of a source (the first) may make to keep to the interval."""
    return cycle_budget(settings, spec or source_specs(settings)[0])


def routes_of(loaded: Sequence[LoadedNotifier]) -> list[Route]:
    return [Route(n.key, status_filter(n.config.statuses), frozenset(n.config.models)) for n in loaded]


def _no_routes() -> Sequence[Route]:
    return ()


@dataclasses.dataclass(frozen=True, slots=True)
class Role:
    """What a poller is built for, beyond its source's settings. ``daemon``: the one
    of ``run``, with its catch-up and stall alerts, queuing for the notifiers
    ``routes`` names (the live view and ``wait`` start on empty memory every time:
    neither applies there). ``models`` (a command line's ids) overrides each
    source's list."""

    models: Sequence[str] | None = None
    daemon: bool = False
    routes: Callable[[], Sequence[Route]] = _no_routes
    clock: Clock = SYSTEM_CLOCK


def build_poller_group(settings: Settings, access: ApiAccess, store: Store, role: Role = Role()) -> PollerGroup:
    """Every source's poller, as one (see :mod:`ftwatch.pollers`)."""
    sources = build_sources(settings, access)
    pollers = [build_poller(source, store, settings, spec=spec, role=role) for spec, source in sources]
    return PollerGroup(pollers, timeout_s=settings.poll.source_timeout_s)


def build_poller(
    source: Source, store: Store, settings: Settings, *, spec: SourceSpec | None = None, role: Role = Role()
) -> Poller:
    """The poller of one source (``spec``; the first when ``None``) with the
    settings' ``[poll]`` section, in ``role``."""
    spec = spec or source_specs(settings)[0]
    identity = SourceIdentity(spec.name, source.provider, spec.namespace)
    config = poller_config(settings, spec, models=role.models, daemon=role.daemon)
    return Poller(source, store, identity, config, routes=role.routes, clock=role.clock)


def poller_config(
    settings: Settings, spec: SourceSpec, *, models: Sequence[str] | None = None, daemon: bool = False
) -> PollerConfig:
    """One source's :class:`PollerConfig` from ``[poll]`` and ``[stall]``."""
    poll = settings.poll
    plan = PlanConfig(
        models=tuple(dict.fromkeys(spec.models if models is None else models)),
        mode=poll.mode,
        reconcile_share=poll.reconcile_share,
        budget_per_cycle=budget_per_cycle(settings, spec),
        lookback_ns=int(poll.lookback_s * 1e9),
        clock_skew_ns=int(poll.clock_skew_s * 1e9),
    )
    return PollerConfig(
        plan,
        concurrency=poll.concurrency,
        catch_up_ns=int(poll.catch_up * 1e9) if daemon else 0,
        stall_after=settings.stall.threshold_s if daemon and settings.stall.after else None,
    )


def reconfigure(
    group: PollerGroup, dispatcher: Dispatcher, settings: Settings, notifiers: Sequence[LoadedNotifier]
) -> None:
    """Hand a reload's settings to the running pollers (each its own
    :class:`PollerConfig`) and the dispatcher (its :class:`RetryPolicy` and notifiers)."""
    specs = {spec.name: spec for spec in source_specs(settings)}
    configs = {
        poller.name: poller_config(settings, specs[poller.name], daemon=True)
        for poller in group.pollers
        if poller.name in specs
    }
    group.reconfigure(settings.poll.source_timeout_s, configs)
    dispatcher.reconfigure(retry_policy(settings), notifiers)


def retry_policy(settings: Settings) -> RetryPolicy:
    d = settings.delivery
    return RetryPolicy(initial_s=d.retry_initial_s, max_s=d.retry_max_s, give_up_after_s=d.give_up_after_s)


def notifier_context(http: httpx.AsyncClient, stdout: IO[str]) -> NotifierContext:
    return NotifierContext(http=http, stdout=stdout)


def load_notifiers(settings: Settings, context: NotifierContext) -> list[LoadedNotifier]:
    """The configured notifiers, built (secret files read: blocking)."""
    return build_notifiers(settings.notifiers, context)


def build_dispatcher(
    store: Store,
    settings: Settings,
    *,
    on_attempt: Callable[[DeliveryAttempt], None] | None = None,
    on_store_error: Callable[[str], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Dispatcher:
    return Dispatcher(
        store,
        retry_policy(settings),
        observer=_fan_out(on_attempt),
        on_store_error=_fan_out(on_store_error),
        clock=clock,
    )


# --- the daemon's parts, composed in one place -------------------------------------


@dataclasses.dataclass(slots=True)
class Runtime:
    """Every part of ``ftwatch run`` for one open state, built by :func:`build_runtime`.
    ``settings`` is the configuration in force (a reload replaces it)."""

    settings: Settings
    observers: Observers
    store: Store
    context: NotifierContext
    notifiers: list[LoadedNotifier]
    dispatcher: Dispatcher
    group: PollerGroup
    loop: PollLoop
    leadership: Leadership | None
    status: ServiceStatus
    #: Builds one source's poller as the daemon's own (a reload adds or restarts some).
    build_poller: Callable[[Settings, SourceSpec], Poller]


def build_runtime(
    settings: Settings,
    observers: Observers,
    store: Store,
    access: ApiAccess,
    *,
    context: NotifierContext,
    notifiers: list[LoadedNotifier],
) -> Runtime:
    """The daemon's parts, each built once, in the order they need each other: the
    dispatcher, the sources (their requests counted for the loop, and for
    ``access``'s listeners), their pollers, the leadership of a shared store, the
    loop. Keys are read here (blocking)."""
    metrics, health, clock = observers.metrics, observers.health, observers.clock
    dispatcher = build_dispatcher(
        store, settings, on_attempt=metrics.delivery_attempt, on_store_error=metrics.store_error, clock=clock
    )
    tally = RequestTally(request_limits(settings))
    counted = dataclasses.replace(
        access,
        on_request=[*access.on_request, metrics.request_done, health.request_done, tally.count],
        on_wait=[*access.on_wait, health.api_wait],
    )

    def routes() -> list[Route]:
        return routes_of(dispatcher.notifiers)

    role = Role(daemon=True, routes=routes, clock=clock)

    def build(settings: Settings, spec: SourceSpec, *, alone: bool = False) -> Poller:
        # alone: the one source of the configuration, whose errors need no name; a
        # reload's (added or restarted) is always named.
        source = build_source_of(spec, settings, counted, alone=alone)
        return build_poller(source, store, settings, spec=spec, role=role)

    specs = source_specs(settings)
    pollers = [build(settings, spec, alone=len(specs) == 1) for spec in specs]
    group = PollerGroup(pollers, timeout_s=settings.poll.source_timeout_s)
    observers.board.sources = {p.name: (p.identity.provider, p.source.vocabulary) for p in pollers}
    # Replicas on one shared store elect one poller; a file has one process anyway.
    leadership = Leadership(store, settings.state.lease_s) if store.shared else None
    relay = store if isinstance(store, PollRequests) and store.shared and pushing(settings) else None
    status = ServiceStatus(observers.systemd, metrics, health, leadership)
    loop = PollLoop(
        group,
        interval_s=settings.poll.interval_s,
        health=health,
        subscribers=[
            metrics.cycle_done,
            health.cycle_done,
            status.cycle_done,
            *([observers.board.cycle_done] if shows_board(settings) else []),
            _waking(dispatcher),
        ],
        replicas=_replicas(leadership, relay),
        tally=tally,
    )
    return Runtime(settings, observers, store, context, notifiers, dispatcher, group, loop, leadership, status, build)


def _replicas(leadership: Leadership | None, relay: PollRequests | None) -> Replicas | None:
    """The loop's part among replicas: led by ``leadership``, and polling for the
    pushes the others took where ``relay`` has them."""
    if leadership is None:
        return None
    if relay is None:
        return Replicas(leadership)
    return Replicas(leadership, lambda: anyio.to_thread.run_sync(relay.take_poll_asks))


def _waking(dispatcher: Dispatcher) -> Callable[[CycleReport], None]:
    """A subscriber that wakes the dispatcher when a cycle queued something."""

    def wake(report: CycleReport) -> None:
        if isinstance(report, Polled) and report.findings.transitions:
            dispatcher.wake()

    return wake


def pushing(settings: Settings) -> bool:
    """Whether any source takes webhooks."""
    return any(spec.webhook is not None for spec in source_specs(settings))


def push_secrets(settings: Settings) -> dict[str, str]:
    """Each source that takes webhooks, by name -> its signing secret (files read)."""
    return {spec.name: spec.webhook.read_secret() for spec in source_specs(settings) if spec.webhook is not None}


def config_fingerprint(settings: Settings, notifiers: Sequence[LoadedNotifier]) -> str:
    """This configuration's fingerprint (see :mod:`ftwatch.ops.fingerprint`)."""
    return fingerprint(
        [
            SourceShape(spec.name, spec.type, tuple(spec.models), spec.webhook is not None)
            for spec in source_specs(settings)
        ],
        [NotifierShape(n.key, tuple(n.config.statuses), tuple(n.config.models)) for n in notifiers],
    )


async def open_store_patiently(settings: Settings, environ: Mapping[str, str], health: Health, *, once: bool) -> Store:
    """The state, opened off the loop: a database that is only down is waited for
    (store.unreachable, once), the heartbeat going on; a wrong URL is exit 2 at once.
    A run --once gives up after ``[state] connect_timeout_s``, like a command."""
    health.failed("waiting for the state database")
    wait_s = settings.state.connect_timeout_s if once else math.inf
    async with anyio.create_task_group() as group:

        async def beat() -> None:
            while True:
                health.beat()
                await anyio.sleep(1.0)

        group.start_soon(beat)
        store = await anyio.to_thread.run_sync(functools.partial(open_store, settings, environ, connect_wait_s=wait_s))
        group.cancel_scope.cancel()
    return store


def shows_board(settings: Settings) -> bool:
    """Whether the status page is served (``[http] listen`` and ``ui``): else nothing
    keeps its data, not a row a cycle nor a count of dead deliveries."""
    return bool(settings.http.listen and settings.http.ui)


def start_housekeeping(group: anyio.abc.TaskGroup, runtime: Runtime) -> None:
    """The daemon's chores beside polling, in ``group``: the outbox gauges, the
    retention, the lease between cycles and the replicas' comparison (a shared
    store), the watchdog (systemd)."""
    leadership, observers, store = runtime.leadership, runtime.observers, runtime.store
    chores = Housekeeping(
        store,
        observers,
        leading=lambda: leadership is None or leadership.leading,
        notifiers=lambda: [n.key for n in runtime.dispatcher.notifiers],
        board=observers.board if shows_board(runtime.settings) else None,
    )
    group.start_soon(chores.outbox_gauges)
    if runtime.settings.state.retention > 0:
        group.start_soon(chores.retention, runtime.settings.state.retention)
    if leadership is not None:
        group.start_soon(leadership.keep)
        if isinstance(store, ReplicaRegistry):

            def own() -> str:
                return config_fingerprint(runtime.settings, runtime.dispatcher.notifiers)

            group.start_soon(chores.compare_replicas, store, leadership.holder, own)
    if (every_s := observers.systemd.watchdog_interval_s) is not None:
        group.start_soon(runtime.status.watchdog, every_s)
