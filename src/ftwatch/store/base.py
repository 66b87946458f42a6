"""What a store is: per-model cursors and the outbox, behind one protocol.

SQLite (:mod:`ftwatch.store.sqlite`) is the embedded default; another backend
implements the same methods and passes the same tests (``tests/test_store.py``).
Every method is synchronous and thread-safe: async callers go through
``anyio.to_thread.run_sync``. A poll cycle's cursors and transitions are written in
one transaction, before anything is delivered: that is what makes delivery at least
once across SIGKILL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from ftwatch.compat import meta_key, model_key, models_in
from ftwatch.errors import LeaseLostError, StoreError, StoreOpenError, StoreUnreachableError
from ftwatch.model import Transition
from ftwatch.outbox import Delivery, DeliveryState, Route, fan_out
from ftwatch.state import ModelState

__all__ = [
    "BUSY",
    "Busy",
    "Claim",
    "CursorStore",
    "CycleCommit",
    "Lease",
    "LeaseInfo",
    "LeaseLostError",
    "LeaseStore",
    "ModelState",
    "Outbox",
    "OutboxAdmin",
    "OutboxRow",
    "PollRequests",
    "ReplicaRegistry",
    "ReplicaView",
    "SourceCursors",
    "Store",
    "StoreError",
    "StoreFacts",
    "StoreOpenError",
    "StoreUnreachableError",
    "for_source",
    "meta_key",
    "model_key",
    "models_in",
]


@dataclass(frozen=True, slots=True)
class Busy:
    """What :meth:`Store.claim_next` says when another process is sending for that
    notifier (one sender per notifier keeps its order and pacing)."""


BUSY: Final = Busy()


@dataclass(frozen=True, slots=True)
class Lease:
    """Polling leadership held by one process: renewed by each cycle's commit, in the
    same transaction, for its own ``term`` only."""

    holder: str
    term: int
    lease_s: float


@dataclass(frozen=True, slots=True)
class CycleCommit:
    """One cycle as a store commits it, in one transaction: the models' rows (by store
    key), the transitions, their deliveries (:func:`~ftwatch.outbox.fan_out`), when,
    what was watched (``scope``) and the lease it renews, for the ``namespace`` source."""

    models: Mapping[str, ModelState]
    transitions: Sequence[Transition]
    #: (transition id, notifier key) to queue, each once.
    deliveries: Sequence[tuple[str, str]]
    now: float
    scope: str | None = None
    lease: Lease | None = None
    namespace: str = ""

    @classmethod
    def of(
        cls,
        models: Mapping[str, ModelState],
        transitions: Sequence[Transition],
        routes: Iterable[Route],
        now: float,
        *,
        scope: str | None = None,
        lease: Lease | None = None,
    ) -> CycleCommit:
        """The commit of a cycle, its deliveries fanned out to ``routes``."""
        return cls(models, transitions, fan_out(transitions, routes), now, scope, lease)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One delivery as ``ftwatch outbox`` shows it."""

    transition: Transition
    notifier: str
    state: DeliveryState
    attempts: int
    created_at: float
    last_error: str | None


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    holder: str | None
    term: int
    valid: bool


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What ``ftwatch status`` reads of the state."""

    last_poll_at: float | None
    #: Models known, per source namespace ("" for the first Cohere source's), and
    #: those of them gone from the API's list (counted apart, not in ``models``).
    models: dict[str, int]
    gone: dict[str, int]
    lease: LeaseInfo | None


class Claim(Protocol):
    """A notifier's oldest pending delivery, held for one sender until it is finished
    or released. If the holder dies, the store gives it back: another process sends it
    again, with the same id."""

    head: tuple[Delivery, Transition]

    def finish(self, updated: Delivery) -> None:
        """Record the attempt's outcome and let go (:class:`StoreError` if it cannot)."""
        ...

    def release(self) -> None:
        """Let go without a change (not due yet, or the process is stopping)."""
        ...


@runtime_checkable
class PollRequests(Protocol):
    """A shared store's relay of pushes: a replica that is not leading takes a push,
    asks here, and the leader polls that source within about a second."""

    def ask_poll(self, source: str) -> None: ...

    def take_poll_asks(self) -> set[str]:
        """The sources asked for since the last call (each handed out once)."""
        ...


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """The replicas on one shared store, as one of them sees it."""

    #: The polling lease's holder, while valid.
    leader: str | None
    #: Each replica that published lately -> the fingerprint of its configuration.
    fingerprints: dict[str, str]


@runtime_checkable
class ReplicaRegistry(Protocol):
    """A shared store where each replica publishes what it watches (its fingerprint)."""

    def publish_fingerprint(self, holder: str, fingerprint: str, now: float) -> ReplicaView:
        """Publish this replica's fingerprint; the view of every recent one."""
        ...

    def replicas(self, now: float) -> ReplicaView:
        """The view, read only (``ftwatch status``)."""
        ...


class CursorStore(Protocol):
    """What a poller needs of the state: each source's cursors, and the commit of a cycle."""

    def is_fresh(self, namespace: str = "") -> bool:
        """True until the first cycle (of that source) has been committed: that cycle
        is the baseline."""
        ...

    def load_scope(self, namespace: str = "") -> str | None:
        """What the last committed cycle (of that source) watched (``all``, or which models)."""
        ...

    def load_models(self) -> dict[str, ModelState]: ...

    def commit_cycle(self, commit: CycleCommit) -> int:
        """Cursors, transitions and their deliveries in one transaction (``scope`` and
        the baseline mark are the ``namespace`` source's); with a ``lease``, renewed in
        it, or :class:`LeaseLostError` and nothing written. Returns how many deliveries
        were queued (a transition already queued is not queued again, and a cursor
        never moves back). :class:`StoreError` (rolled back) if it fails."""
        ...


class Outbox(Protocol):
    """What a dispatcher needs of the state: a notifier's head, claimed, and its outcome saved."""

    def claim_next(self, notifier: str) -> Claim | Busy | None:
        """The oldest pending delivery of one notifier, claimed for this sender;
        :data:`BUSY` while another process holds that notifier (one sender per notifier
        keeps its order and pacing); ``None`` when nothing is pending."""
        ...

    def save_delivery(self, delivery: Delivery) -> None:
        """Record an attempt's outcome (when the claim that held it could not)."""
        ...


class LeaseStore(Protocol):
    """What the leadership of several replicas needs of the state: the polling lease."""

    #: Whether several processes can share this store (then they elect a poller).
    shared: bool

    def acquire_lease(self, holder: str, lease_s: float) -> int | None:
        """The term if ``holder`` leads now (it did, or the lease had expired, judged by
        the store's clock); ``None`` while another holds it."""
        ...

    def release_lease(self, holder: str, term: int) -> None:
        """Hand leadership over at once (a stop, a leader that cannot reach the API)."""
        ...


class OutboxAdmin(Protocol):
    """What housekeeping and the operator's commands need of the state."""

    def count_deliveries(self, state: DeliveryState = DeliveryState.PENDING) -> dict[str, int]:
        """Deliveries in one state, per notifier."""
        ...

    def oldest_pending_age(self, now: float) -> float | None:
        """Seconds the oldest pending delivery has waited; ``None`` if none waits."""
        ...

    def list_outbox(
        self, state: DeliveryState | None = None, notifier: str | None = None, limit: int = 10_000
    ) -> list[OutboxRow]:
        """Deliveries, oldest transition first, optionally of one state and notifier."""
        ...

    def replay(self, ids: Sequence[str] | None, notifier: str | None, now: float) -> int:
        """Dead letters (all, or these transition ids) back to pending, as if queued
        ``now``; returns how many. A running daemon sends them at its next look."""
        ...

    def purge(self, before: float, states: Iterable[DeliveryState] = (DeliveryState.DELIVERED,)) -> int:
        """Remove deliveries in ``states`` queued before ``before``; returns how many."""
        ...

    def facts(self) -> StoreFacts:
        """The last committed poll, the models known, and (shared stores) the lease."""
        ...


class Store(CursorStore, Outbox, LeaseStore, OutboxAdmin, Protocol):
    """The whole state: each role above, as anyio's ``ByteStream`` combines its two
    halves. Each consumer is typed with the role it needs; the backends are all."""

    #: Where it lives, for messages (a file's path, a URL without its password).
    where: str

    def close(self) -> None: ...

    def schema_version(self) -> int: ...


class SourceCursors:
    """One source's cursors in a state several sources share, by the source's own
    ids: the keys and their legacy namespace are composed here, never by the poller."""

    def __init__(self, store: CursorStore, namespace: str) -> None:
        self.store = store
        self.namespace = namespace

    def is_fresh(self) -> bool:
        return self.store.is_fresh(self.namespace)

    def scope(self) -> str | None:
        return self.store.load_scope(self.namespace)

    def load(self) -> dict[str, ModelState]:
        return models_in(self.namespace, self.store.load_models())

    def commit(
        self,
        models: Mapping[str, ModelState],
        transitions: Sequence[Transition],
        routes: Iterable[Route],
        now: float,
        *,
        scope: str | None,
        lease: Lease | None,
    ) -> int:
        """The cycle of this source (``models`` by its own ids), in one transaction."""
        rows = {model_key(self.namespace, model_id): state for model_id, state in models.items()}
        deliveries = fan_out(transitions, routes)
        return self.store.commit_cycle(CycleCommit(rows, transitions, deliveries, now, scope, lease, self.namespace))


def for_source(store: CursorStore, namespace: str) -> SourceCursors:
    """The cursors of the source whose models live under ``namespace``."""
    return SourceCursors(store, namespace)
