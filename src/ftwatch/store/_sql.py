"""What both backends share of their SQL: the row codecs, the model upsert, the
cycle's statements and the operator's queries, in one :class:`Dialect` each.

Private to the store package: the rest of ftwatch sees only :mod:`ftwatch.store.base`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ftwatch.compat import meta_key
from ftwatch.model import Progress, Transition
from ftwatch.outbox import Delivery, DeliveryState
from ftwatch.state import Cursor, ModelState
from ftwatch.store.base import CycleCommit, OutboxRow

__all__ = [
    "MODEL_COLUMNS",
    "POSTGRES",
    "SQLITE",
    "CycleSql",
    "Dialect",
    "OutboxSql",
    "decode_cursor",
    "delivery_params",
    "encode_cursor",
    "model_row",
    "model_states",
    "outbox_rows",
    "pending_delivery",
    "split_gone",
    "upsert_model_sql",
]


def encode_cursor(cursor: Cursor) -> tuple[str, str]:
    """A cursor's event keys as two JSON texts (every backend stores them alike)."""
    return json.dumps(sorted(cursor.recent)), json.dumps(sorted(cursor.undated))


def decode_cursor(
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
    " noticed_ns, progress"
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
            progress,
        ) = row
        cursor = decode_cursor(at_ns, seen, last_status, int(lazy), horizon_ns, undated)
        # ModelState's fields after the cursor are the row's columns, in their order.
        states[model_id] = ModelState(
            cursor, name, list_status, list_updated, stalled, gone, noticed, decode_progress(progress)
        )
    return states


def encode_progress(progress: Progress | None) -> str | None:
    """A job's progress as one JSON text (its fields by name: a row outlives a build)."""
    if progress is None:
        return None
    return json.dumps(
        {
            "step": progress.step,
            "total_steps": progress.total_steps,
            "percent": progress.percent,
            "eta_ns": progress.eta_ns,
            "train_loss": progress.train_loss,
            "valid_loss": progress.valid_loss,
            "trained_tokens": progress.trained_tokens,
            "losses": list(progress.losses),
        },
        separators=(",", ":"),
    )


def decode_progress(text: str | None) -> Progress | None:
    """A row's progress back; an unreadable one is none (it is only ever a view)."""
    if not text:
        return None
    try:
        return Progress.from_body(json.loads(text))
    except ValueError:
        return None


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
        encode_progress(state.progress),
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


def split_gone(rows: Iterable[Sequence[Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """Rows of (namespace, is gone, count) as the models and the gone, per namespace."""
    models: dict[str, int] = {}
    gone: dict[str, int] = {}
    for namespace, is_gone, count in rows:
        into = gone if is_gone else models
        into[str(namespace)] = into.get(str(namespace), 0) + int(count)
    return models, gone


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the backends' SQL: the tables' prefix and the placeholder."""

    prefix: str
    mark: str

    def table(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)


SQLITE = Dialect("", "?")
POSTGRES = Dialect("ftwatch_", "%s")


class OutboxSql:
    """The operator's queries over the outbox in one backend's :class:`Dialect`: the
    same SQL runs on SQLite and PostgreSQL."""

    def __init__(self, dialect: Dialect) -> None:
        self.deliveries, self.transitions = dialect.table("deliveries"), dialect.table("transitions")
        self.mark = dialect.mark

    def listing(self, state: DeliveryState | None, notifier: str | None, limit: int) -> tuple[str, list[Any]]:
        where, params = self._filters(state, notifier)
        sql = (
            "SELECT t.payload, d.notifier, d.state, d.attempts, d.created_at, d.last_error"  # noqa: S608
            f" FROM {self.deliveries} d JOIN {self.transitions} t ON t.id = d.transition_id{where}"
            f" ORDER BY t.seq LIMIT {int(limit)}"
        )
        return sql, params

    def replay(self, ids: Sequence[str] | None, notifier: str | None, now: float) -> tuple[str, list[Any]]:
        """Dead letters back to pending: attempts, backoff and the give-up clock anew."""
        where, params = self._filters(DeliveryState.DEAD, notifier, alias="")
        if ids is not None:
            where += f" AND transition_id IN ({', '.join([self.mark] * len(ids))})"
            params += list(ids)
        sql = (
            f"UPDATE {self.deliveries} SET state = 'pending', attempts = 0, next_attempt_at = 0,"  # noqa: S608
            f" last_error = NULL, created_at = {self.mark}{where}"
        )
        return sql, [now, *params]

    #: Rows one purge transaction removes at most: a big first purge (a year of rows)
    #: holds the daemon's writes up for a moment per batch, never for the whole purge.
    PURGE_BATCH = 2_000

    def purge_batch(self, before: float, states: Iterable[DeliveryState]) -> tuple[str, list[Any]]:
        """The next finished deliveries queued before ``before`` (their keys)."""
        names = [state.value for state in states]
        marks = ", ".join([self.mark] * len(names))
        return (
            f"SELECT notifier, transition_id FROM {self.deliveries}"  # noqa: S608 - our own names
            f" WHERE state IN ({marks}) AND created_at < {self.mark} LIMIT {self.PURGE_BATCH}",
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
        marks = ", ".join([self.mark] * len(names))
        return (
            f"DELETE FROM {self.deliveries} WHERE state IN ({marks}) AND created_at < {self.mark}"  # noqa: S608
            f" AND notifier = {self.mark} AND transition_id = {self.mark}",
            [*names, before],
            f"DELETE FROM {self.transitions} WHERE id = {self.mark}"  # noqa: S608
            f" AND NOT EXISTS (SELECT 1 FROM {self.deliveries} d WHERE d.transition_id = {self.mark})",
        )

    #: Ids one replay statement names at most: drivers bind at most 65,535 parameters
    #: (PostgreSQL's protocol), SQLite 32,766.
    REPLAY_CHUNK = 10_000

    def _filters(self, state: DeliveryState | None, notifier: str | None, alias: str = "d.") -> tuple[str, list[Any]]:
        clauses, params = [], []
        if state is not None:
            clauses.append(f"{alias}state = {self.mark}")
            params.append(state.value)
        if notifier is not None:
            clauses.append(f"{alias}notifier = {self.mark}")
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
        transition_id, notifier, created_at, DeliveryState.PENDING, attempts, next_attempt_at, last_error
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


class CycleSql:
    """What a cycle's commit writes, in one backend's :class:`Dialect`: the same
    statements on SQLite and PostgreSQL (both speak ``ON CONFLICT``)."""

    def __init__(self, dialect: Dialect) -> None:
        meta, mark = dialect.table("meta"), dialect.mark
        self.upsert_model = upsert_model_sql(dialect.table("models"), mark)
        self.insert_transition = (
            f"INSERT INTO {dialect.table('transitions')} (id, payload) VALUES ({mark}, {mark})"  # noqa: S608
            " ON CONFLICT (id) DO NOTHING"
        )
        self.insert_delivery = (
            f"INSERT INTO {dialect.table('deliveries')} (transition_id, notifier, state, created_at)"  # noqa: S608
            f" VALUES ({dialect.marks(4)}) ON CONFLICT DO NOTHING"
        )
        self.mark_baselined = f"INSERT INTO {meta} (key, value) VALUES ({mark}, '1') ON CONFLICT DO NOTHING"  # noqa: S608
        self.set_meta = (
            f"INSERT INTO {meta} (key, value) VALUES ({mark}, {mark})"  # noqa: S608
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )

    @staticmethod
    def model_rows(commit: CycleCommit) -> list[tuple[Any, ...]]:
        return [model_row(key, state) for key, state in commit.models.items()]

    @staticmethod
    def transition_rows(commit: CycleCommit) -> list[tuple[str, str]]:
        return [(t.id, json.dumps(t.to_payload())) for t in commit.transitions]

    @staticmethod
    def delivery_rows(commit: CycleCommit) -> list[tuple[str, str, str, float]]:
        return [(tid, key, DeliveryState.PENDING.value, commit.now) for tid, key in commit.deliveries]

    @staticmethod
    def meta_rows(commit: CycleCommit) -> list[tuple[str, str]]:
        """``last_poll_at``, and the source's ``scope`` if the cycle says one."""
        rows = [("last_poll_at", repr(commit.now))]
        if commit.scope is not None:
            rows.append((meta_key("scope", commit.namespace), commit.scope))
        return rows
