"""What a store is: per-model cursors and the outbox, behind one protocol.

SQLite (:mod:`ftwatch.store.sqlite`) is the embedded default; another backend
implements the same methods and passes the same tests (``tests/test_store.py``).
Every method is synchronous and thread-safe: async callers go through
``anyio.to_thread.run_sync``. A poll cycle's cursors and transitions are written in
one transaction, before anything is delivered: that is what makes delivery at least
once across SIGKILL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from ftwatch.compat import meta_key, model_key, models_in
from ftwatch.errors import LeaseLostError, StoreError, StoreOpenError, StoreUnreachableError
from ftwatch.model import Transition
from ftwatch.outbox import Delivery, DeliveryState, Route
from ftwatch.state import Cursor, ModelState

__all__ = [
    "BUSY",
    "Busy",
    "Claim",
    "Lease",
    "LeaseInfo",
    "LeaseLostError",
    "ModelState",
    "OutboxRow",
    "OutboxSql",
    "PollRequests",
    "ReplicaRegistry",
    "ReplicaView",
    "Store",
    "StoreError",
    "StoreFacts",
    "StoreOpenError",
    "StoreUnreachableError",
    "decode_cursor",
    "delivery_params",
    "encode_cursor",
    "meta_key",
    "model_key",
    "model_row",
    "model_states",
    "models_in",
    "outbox_rows",
    "pending_delivery",
    "split_gone",
    "upsert_model_sql",
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


def encode_cursor(cursor: Cursor) -> tuple[str, str]:
    """A cursor's event keys as two JSON texts (every backend stores them alike)."""
    return json.dumps(sorted(cursor.recent)), json.dumps(sorted(cursor.undated))


def decode_cursor(  # noqa: PLR0917 - the columns of one row, in their order
    at_ns: int | None, seen: str, last_status: str | None, lazy: int, horizon_ns: int | None, undated: str
) -> Cursor:
    return Cursor(
        at_ns,
        frozenset((int(ns), s, u, int(p)) for ns, s, u, p in json.loads(seen)),
        last_status,
        lazy=bool(lazy),
        horizon_ns=horizon_ns,
        undated=frozenset((s, u, int(p)) for s, u, p in json.loads(undated)),
    )


#: The columns of a model's row, in this order, in every backend.
MODEL_COLUMNS = (
    "model_id, name, at_ns, seen, last_status, lazy, list_status, list_updated, horizon_ns, undated, stalled, gone,"
    " noticed_ns"
)


def model_states(rows: Iterable[Sequence[Any]]) -> dict[str, ModelState]:
    """Rows of :data:`MODEL_COLUMNS` as the models' states."""
    states = {}
    for row in rows:
        (
            model_id,
            name,
            at_ns,
            seen,
            last_status,
            lazy,
            list_status,
            list_updated,
            horizon_ns,
            undated,
            stalled,
            gone,
            noticed,
        ) = row
        states[model_id] = ModelState(
            cursor=decode_cursor(at_ns, seen, last_status, int(lazy), horizon_ns, undated),
            name=name,
            list_status=list_status,
            list_updated=list_updated,
            stalled=stalled,
            gone=gone,
            noticed_ns=noticed,
        )
    return states


def model_row(model_id: str, state: ModelState) -> tuple[Any, ...]:
    """One model's state as the values of :data:`MODEL_COLUMNS`, in order."""
    seen, undated = encode_cursor(state.cursor)
    cursor = state.cursor
    return (
        model_id,
        state.name,
        cursor.at_ns,
        seen,
        cursor.last_status,
        cursor.lazy,
        state.list_status,
        state.list_updated,
        cursor.horizon_ns,
        undated,
        state.stalled,
        state.gone,
        state.noticed_ns,
    )


def upsert_model_sql(table: str, placeholder: str) -> str:
    """Insert or update one model row; a cursor only moves forward, so a slower
    poller racing a faster one cannot take it back (and make anything be sent again)."""
    columns = [c.strip() for c in MODEL_COLUMNS.split(",")]
    values = ", ".join([placeholder] * len(columns))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    return (
        f"INSERT INTO {table} ({MODEL_COLUMNS}) VALUES ({values})"  # noqa: S608 - our own constant names
        f" ON CONFLICT (model_id) DO UPDATE SET {updates}"
        f" WHERE {table}.at_ns IS NULL OR (excluded.at_ns IS NOT NULL AND excluded.at_ns >= {table}.at_ns)"
    )


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


def split_gone(rows: Iterable[Sequence[Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """Rows of (namespace, is gone, count) as the models and the gone, per namespace."""
    models: dict[str, int] = {}
    gone: dict[str, int] = {}
    for namespace, is_gone, count in rows:
        into = gone if is_gone else models
        into[str(namespace)] = into.get(str(namespace), 0) + int(count)
    return models, gone


class OutboxSql:
    """The operator's queries over the outbox, for one backend's table names and
    placeholder: the same SQL runs on SQLite and PostgreSQL."""

    def __init__(self, prefix: str, placeholder: str) -> None:
        self.d, self.t, self.ph = f"{prefix}deliveries", f"{prefix}transitions", placeholder

    def listing(self, state: DeliveryState | None, notifier: str | None, limit: int) -> tuple[str, list[Any]]:
        where, params = self._filters(state, notifier)
        sql = (
            "SELECT t.payload, d.notifier, d.state, d.attempts, d.created_at, d.last_error"  # noqa: S608
            f" FROM {self.d} d JOIN {self.t} t ON t.id = d.transition_id{where}"
            f" ORDER BY t.seq LIMIT {int(limit)}"
        )
        return sql, params

    def replay(self, ids: Sequence[str] | None, notifier: str | None, now: float) -> tuple[str, list[Any]]:
        """Dead letters back to pending: attempts, backoff and the give-up clock anew."""
        where, params = self._filters(DeliveryState.DEAD, notifier, alias="")
        if ids is not None:
            where += f" AND transition_id IN ({', '.join([self.ph] * len(ids))})"
            params += list(ids)
        sql = (
            f"UPDATE {self.d} SET state = 'pending', attempts = 0, next_attempt_at = 0,"  # noqa: S608
            f" last_error = NULL, created_at = {self.ph}{where}"
        )
        return sql, [now, *params]

    #: Rows one purge transaction removes at most: a big first purge (a year of rows)
    #: holds the daemon's writes up for a moment per batch, never for the whole purge.
    PURGE_BATCH = 2_000

    def purge_batch(self, before: float, states: Iterable[DeliveryState]) -> tuple[str, list[Any]]:
        """The next finished deliveries queued before ``before`` (their keys)."""
        names = [state.value for state in states]
        marks = ", ".join([self.ph] * len(names))
        return (
            f"SELECT notifier, transition_id FROM {self.d}"  # noqa: S608 - our own names
            f" WHERE state IN ({marks}) AND created_at < {self.ph} LIMIT {self.PURGE_BATCH}",
            [*names, before],
        )

    def in_batches(self, one_batch: Callable[[], tuple[int, int]]) -> int:
        """Run ``one_batch`` (a transaction of its own, returning the rows it selected
        and those it removed) until a batch selects fewer than a whole batch; the rows
        removed in all."""
        removed = 0
        while True:
            selected, gone = one_batch()
            removed += gone
            if selected < self.PURGE_BATCH:
                return removed

    def replay_chunks(self, ids: Sequence[str] | None) -> list[Sequence[str] | None]:
        """The ids in chunks of :data:`REPLAY_CHUNK` (``[None]``: every dead letter)."""
        if ids is None:
            return [None]
        return [ids[start : start + self.REPLAY_CHUNK] for start in range(0, len(ids), self.REPLAY_CHUNK)]

    def purge_delete(self, before: float, states: Iterable[DeliveryState]) -> tuple[str, list[Any], str]:
        """Delete one delivery by key (its key's two parameters follow ``params``),
        only if it is still finished and old: a replay or a dispatcher that changed it
        since the batch was selected wins (on PostgreSQL the condition is checked
        again on the row as it is once its lock is had). Then its transition, if no
        delivery refers to it any more (the model's cursor keeps it from being sent
        again)."""
        names = [state.value for state in states]
        marks = ", ".join([self.ph] * len(names))
        return (
            f"DELETE FROM {self.d} WHERE state IN ({marks}) AND created_at < {self.ph}"  # noqa: S608
            f" AND notifier = {self.ph} AND transition_id = {self.ph}",
            [*names, before],
            f"DELETE FROM {self.t} WHERE id = {self.ph}"  # noqa: S608
            f" AND NOT EXISTS (SELECT 1 FROM {self.d} d WHERE d.transition_id = {self.ph})",
        )

    #: Ids one replay statement names at most: drivers bind at most 65,535 parameters
    #: (PostgreSQL's protocol), SQLite 32,766.
    REPLAY_CHUNK = 10_000

    def _filters(self, state: DeliveryState | None, notifier: str | None, alias: str = "d.") -> tuple[str, list[Any]]:
        clauses, params = [], []
        if state is not None:
            clauses.append(f"{alias}state = {self.ph}")
            params.append(state.value)
        if notifier is not None:
            clauses.append(f"{alias}notifier = {self.ph}")
            params.append(notifier)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def outbox_rows(rows: Iterable[Sequence[Any]]) -> list[OutboxRow]:
    return [
        OutboxRow(
            transition=Transition.from_payload(json.loads(payload)),
            notifier=notifier,
            state=DeliveryState(state),
            attempts=int(attempts),
            created_at=float(created_at),
            last_error=last_error,
        )
        for payload, notifier, state, attempts, created_at, last_error in rows
    ]


def pending_delivery(notifier: str, row: Sequence[Any]) -> tuple[Delivery, Transition]:
    """A pending row (transition_id, created_at, attempts, next_attempt_at,
    last_error, payload) as the delivery and its transition."""
    transition_id, created_at, attempts, next_attempt_at, last_error, payload = row
    delivery = Delivery(
        transition_id=transition_id,
        notifier=notifier,
        created_at=created_at,
        attempts=attempts,
        next_attempt_at=next_attempt_at,
        last_error=last_error,
    )
    return delivery, Transition.from_payload(json.loads(payload))


def delivery_params(delivery: Delivery) -> tuple[Any, ...]:
    """What an UPDATE of one delivery binds: state, attempts, next_attempt_at,
    last_error, then the key (notifier, transition_id)."""
    return (
        delivery.state.value,
        delivery.attempts,
        delivery.next_attempt_at,
        delivery.last_error,
        delivery.notifier,
        delivery.transition_id,
    )


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


class Store(Protocol):
    """What the poller, the dispatcher and the commands need of the state."""

    #: Where it lives, for messages (a file's path, a URL without its password).
    where: str

    def close(self) -> None: ...

    def schema_version(self) -> int: ...

    def is_fresh(self, namespace: str = "") -> bool:
        """True until the first cycle (of that source) has been committed: that cycle
        is the baseline."""
        ...

    def load_scope(self, namespace: str = "") -> str | None:
        """What the last committed cycle (of that source) watched (``all``, or which models)."""
        ...

    def load_models(self) -> dict[str, ModelState]: ...

    def commit_cycle(
        self,
        models: Mapping[str, ModelState],
        transitions: Sequence[Transition],
        routes: Iterable[Route],
        now: float,
        *,
        scope: str | None = None,
        lease: Lease | None = None,
        namespace: str = "",
    ) -> int:
        """Cursors, transitions and their deliveries in one transaction (``scope`` and
        the baseline mark are the ``namespace`` source's); with a
        ``lease``, renewed in it, or :class:`LeaseLostError` and nothing written. Returns how
        many deliveries were queued (a transition already queued is not queued again,
        and a cursor never moves back). :class:`StoreError` (rolled back) if it fails."""
        ...

    def next_pending(self, notifier: str) -> tuple[Delivery, Transition] | None:
        """The oldest undelivered transition of one notifier: notifiers deliver in order."""
        ...

    def save_delivery(self, delivery: Delivery) -> None: ...

    #: Whether several processes can share this store (then they elect a poller).
    shared: bool

    def acquire_lease(self, holder: str, lease_s: float) -> int | None:
        """The term if ``holder`` leads now (it did, or the lease had expired, judged by
        the store's clock); ``None`` while another holds it."""
        ...

    def release_lease(self, holder: str, term: int) -> None:
        """Hand leadership over at once (a stop, a leader that cannot reach the API)."""
        ...

    def oldest_pending_age(self, now: float) -> float | None:
        """Seconds the oldest pending delivery has waited; ``None`` if none waits."""
        ...

    def claim_next(self, notifier: str) -> Claim | Busy | None:
        """The oldest pending delivery of one notifier, claimed for this sender;
        :data:`BUSY` while another process holds that notifier (one sender per notifier
        keeps its order and pacing); ``None`` when nothing is pending."""
        ...

    def count_deliveries(self, state: DeliveryState = DeliveryState.PENDING) -> dict[str, int]:
        """Deliveries in one state, per notifier."""
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
