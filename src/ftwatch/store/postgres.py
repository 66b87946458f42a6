"""A :class:`~ftwatch.store.base.Store` on PostgreSQL (``pip install 'ftwatch[postgres]'``).

The same protocol and the same tests as SQLite. Correctness does not rest on one
process owning the state: a transition is enqueued once (unique keys and
``ON CONFLICT DO NOTHING``, in the cycle's transaction with its cursors), and a
cursor only moves forward, so two pollers racing produce one row per transition.

Methods are synchronous and thread-safe (a psycopg connection pool); async callers go
through ``anyio.to_thread.run_sync``, as for SQLite.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg import sql
from psycopg_pool import ConnectionPool

from ftwatch.model import Transition
from ftwatch.outbox import Delivery, DeliveryState
from ftwatch.store import _sql
from ftwatch.store.base import (
    BUSY,
    Busy,
    CycleCommit,
    Lease,
    LeaseInfo,
    LeaseLostError,
    ModelState,
    OutboxRow,
    ReplicaView,
    StoreError,
    StoreFacts,
    StoreOpenError,
    StoreUnreachableError,
    meta_key,
)

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

#: Our own constant columns, no input: not an injection.
_LOAD_MODELS = f"SELECT {_sql.MODEL_COLUMNS} FROM ftwatch_models".encode()  # noqa: S608


log = structlog.get_logger("ftwatch.store.postgres")

_T = TypeVar("_T")

#: This backend's schema, in ``ftwatch_meta``; each step below migrates one version up.
SCHEMA_VERSION = 5

#: The advisory lock that serialises migrations between replicas starting together.
_MIGRATION_LOCK = 0x66747721

_SCHEMA_1 = [
    """CREATE TABLE ftwatch_models (
        model_id TEXT PRIMARY KEY,
        name TEXT,
        at_ns BIGINT,
        seen TEXT NOT NULL,
        last_status TEXT,
        lazy BOOLEAN NOT NULL DEFAULT FALSE,
        list_status TEXT,
        list_updated TEXT,
        horizon_ns BIGINT,
        undated TEXT NOT NULL DEFAULT '[]'
    )""",
    """CREATE TABLE ftwatch_transitions (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL
    )""",
    """CREATE TABLE ftwatch_deliveries (
        transition_id TEXT NOT NULL REFERENCES ftwatch_transitions (id),
        notifier TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        last_error TEXT,
        PRIMARY KEY (notifier, transition_id)
    )""",
    "CREATE INDEX ftwatch_deliveries_pending ON ftwatch_deliveries (notifier, state)",
]

_SCHEMA_2 = [
    # Polling leadership: one row, a term that only grows, an expiry on the server's clock.
    """CREATE TABLE ftwatch_lease (
        name TEXT PRIMARY KEY,
        holder TEXT,
        term BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX ftwatch_deliveries_oldest ON ftwatch_deliveries (state, created_at)",
]

_SCHEMA_3 = [
    # The stay a stall alert was queued for; purges find orphaned transitions by index.
    "ALTER TABLE ftwatch_models ADD COLUMN stalled TEXT",
    "CREATE INDEX ftwatch_deliveries_transition ON ftwatch_deliveries (transition_id)",
]

_SCHEMA_4 = [
    # Jobs gone from the API's list are marked, and counted apart; a stay's start by
    # ftwatch's clock, for providers that date nothing.
    "ALTER TABLE ftwatch_models ADD COLUMN gone TEXT",
    "ALTER TABLE ftwatch_models ADD COLUMN noticed_ns BIGINT",
]

_SCHEMA_5 = [
    # A running job's latest progress (step, loss, ETA), where its provider tells.
    "ALTER TABLE ftwatch_models ADD COLUMN progress TEXT",
]

#: Version n -> the statements that make n + 1 (0 is an empty database).
_MIGRATIONS: dict[int, list[str]] = {0: _SCHEMA_1, 1: _SCHEMA_2, 2: _SCHEMA_3, 3: _SCHEMA_4, 4: _SCHEMA_5}

#: psycopg says these when the server is not there (yet): worth waiting for. Anything
#: else at connect time (a wrong password, no such database) is the URL's fault.
_UNREACHABLE = ("connection refused", "could not connect", "timeout expired", "no such file or directory")


_HEAD = (
    "SELECT d.transition_id, d.created_at, d.attempts, d.next_attempt_at, d.last_error, t.payload"
    " FROM ftwatch_deliveries d JOIN ftwatch_transitions t ON t.id = d.transition_id"
    " WHERE d.notifier = %s AND d.state = 'pending' ORDER BY t.seq LIMIT 1"
)
#: Take the lease if it is ours, free or expired (a new holder gets the next term; the
#: holder renewing a valid lease keeps its own); no row comes back while another holds it.
_TAKE_LEASE = (
    "INSERT INTO ftwatch_lease AS l (name, holder, term, expires_at)"
    " VALUES ('poller', %(holder)s, 1, now() + make_interval(secs => %(lease_s)s))"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,"
    " term = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.term ELSE l.term + 1 END"
    " WHERE l.holder IS NULL OR l.holder = excluded.holder OR l.expires_at <= now()"
    " RETURNING l.term"
)
_CYCLE = _sql.CycleSql(_sql.POSTGRES)
_OUTBOX = _sql.OutboxSql(_sql.POSTGRES)


#: ``ftwatch_meta`` keys of the sources a push asked to poll (see ``ask_poll``).
_POLL_ASKED = "poll_asked/"

#: ``ftwatch_meta`` keys of each replica's fingerprint, and how long one counts.
_REPLICA = "replica/"
_REPLICA_TTL_S = 120.0

_SAVE = (
    "UPDATE ftwatch_deliveries SET state = %s, attempts = %s, next_attempt_at = %s, last_error = %s"
    " WHERE notifier = %s AND transition_id = %s"
)


#: A connection that stops answering (a partition, not a close) is noticed by the
#: client within seconds: keepalives on an idle one, a TCP user timeout on a write.
_CONNECTION: dict[str, Any] = {
    "autocommit": True,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
}


def _configure(conn: psycopg.Connection[Any]) -> None:
    """The server's side of the same, in one round trip: a session left in a
    transaction (a claim whose process was cut off mid-send) is ended after half a
    minute, which frees its row and its notifier (a commit sets a shorter bound, its
    lease, and a claim's look five seconds: see _HOLD_FOR); no statement may hold the
    cycle longer than half a minute; and the server's own keepalives find a client
    that vanished (a partition) within seconds, not the system's two hours."""
    conn.execute(
        "SELECT set_config('idle_in_transaction_session_timeout', '30s', false),"
        " set_config('statement_timeout', '30s', false),"
        " set_config('tcp_keepalives_idle', '5', false),"
        " set_config('tcp_keepalives_interval', '2', false),"
        " set_config('tcp_keepalives_count', '2', false),"
        " set_config('tcp_user_timeout', '10000', false)"
    )


#: How long the server lets this transaction sit idle before it ends the session.
#: It arms that timer only on answering a Sync (or a simple query), and a Flush read
#: afterwards (which psycopg sends on leaving a pipeline) disarms it until the next
#: Sync: so a transaction that stays open after a round trip must end that round trip
#: with a Sync and nothing after it, or the server waits for a cut-off client forever.
_HOLD_FOR = "SELECT set_config('idle_in_transaction_session_timeout', %s, true)"
_SEND_IDLE = "30s"

#: A claim's look at its notifier's head, as one simple query (literals, no pipeline:
#: it ends in the server's ReadyForQuery, so its five seconds' bound is armed). A
#: look holds the notifier's lock for a moment only: a process cut off inside it
#: holds that notifier from the other replicas for those seconds, not the half minute
#: a send may take.
_LOOK = sql.SQL(
    "BEGIN; SELECT set_config('idle_in_transaction_session_timeout', '5s', true);"
    " SELECT pg_try_advisory_xact_lock(hashtext('ftwatch.notifier'), hashtext({notifier}));"
    " " + _HEAD.replace("%s", "{notifier}") + " FOR UPDATE OF d SKIP LOCKED"
)


class _LeaseGoneError(Exception):
    """Raised inside the commit's transaction so that it rolls back whole."""


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


class _RowClaim:
    """A delivery held by this process: its notifier's advisory lock and its row lock,
    in a transaction on a connection of its own until finished or released. A process
    that dies drops the connection, the server rolls back, and the row is free again."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any], head: tuple[Delivery, Transition]) -> None:
        self._store = store
        self._conn: psycopg.Connection[Any] | None = conn
        self.head = head

    def finish(self, updated: Delivery) -> None:
        conn, self._conn = self._conn, None
        assert conn is not None, "a claim is finished once"
        try:
            conn.execute(_SAVE, _sql.delivery_params(updated))
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._store._give_back(conn, broken=True)
            raise StoreError(f"state database {self._store._where}: {_first_line(exc)}") from None
        self._store._give_back(conn)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._store._give_back(conn, rollback=True)


def _password_of(url: str) -> str:
    """The URL's password as written (between ``user:`` and ``@``), or ""."""
    authority = url.partition("://")[2].partition("/")[0]
    userinfo = authority.rpartition("@")[0]
    return userinfo.partition(":")[2]


def scrubbed(text: str, url: str) -> str:
    """A driver's message with no part of the URL's password: libpq quotes the token
    it cannot parse (``invalid percent-encoded token: "pa%zz"``), so a message that
    quotes one is replaced whole, and the password itself, raw or decoded, is cut."""
    if "percent-encoded" in text or "invalid URI" in text:
        return "the URL has an invalid %-escape or character (write '%' as %25, '@' as %40, '/' as %2F)"
    password = _password_of(url)
    for secret in {password, urllib.parse.unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return text


def _unreachable(exc: psycopg.Error) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _UNREACHABLE)


class PostgresStore:
    """The state in a PostgreSQL database, shared by every process that uses it.

    ``where``: how to name it in messages (the URL without its password).
    ``connect_wait_s``: how long to wait for a server that refuses connections at
    start (it may be starting too) before giving up with exit 2.
    """

    def __init__(self, url: str, *, where: str, connect_wait_s: float = 30.0) -> None:
        self.where = where
        self._where = where
        self._url = url
        self._pool = ConnectionPool(
            # A claim holds a connection for the length of a send: one per notifier,
            # beside the poller's.
            url,
            min_size=1,
            max_size=16,
            open=False,
            kwargs=_CONNECTION,
            configure=_configure,
            name="ftwatch",
        )
        self._connect(url, connect_wait_s)
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _connect(self, url: str, wait_s: float) -> None:
        """Probe with one plain connection (its error says what is wrong), then open
        the pool. A server that refuses connections is waited for, with backoff and one
        log line; a wrong URL (password, database) is exit 2 at once."""
        deadline = time.monotonic() + wait_s
        pause, told = 0.5, False
        while True:
            try:
                with psycopg.connect(url, connect_timeout=5, **_CONNECTION) as probe:
                    probe.execute("SELECT 1")
            except psycopg.Error as exc:
                text = scrubbed(str(exc), url)
                detail = next((line for line in text.splitlines() if line.strip()), type(exc).__name__).strip()
                if not _unreachable(exc):
                    raise StoreOpenError(
                        f"cannot use the state database {self._where}: {detail}; fix [state] url, or start the server"
                    ) from None
                if time.monotonic() >= deadline:
                    # Down, not wrong: no usage error (exit 1), and how long it was given.
                    raise StoreUnreachableError(
                        f"the state database {self._where} did not answer within {wait_s:g}s ({detail});"
                        " start it, or raise [state] connect_timeout_s"
                    ) from None
                if not told:
                    log.warning("store.unreachable", database=self._where, note="retrying until it answers")
                    told = True
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
            else:
                self._pool.open(wait=True, timeout=10.0)
                return

    def _stored_version(self) -> int:
        """The schema version as the database says it (0: no ftwatch tables yet), read
        without writing anything: a role with only the data grants can open it."""
        with self._pool.connection() as conn:
            try:
                row = conn.execute("SELECT value FROM ftwatch_meta WHERE key = 'schema_version'").fetchone()
            except psycopg.errors.UndefinedTable:
                return 0
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        """Create the schema, or bring an older one forward, under a lock shared by
        every replica, in one transaction; a current one is left alone (no DDL at
        all, so the usual production grant of SELECT, INSERT, UPDATE and DELETE is
        enough to run)."""
        version = self._stored_version()
        if version == SCHEMA_VERSION:
            return
        try:
            self._migrate_from_locked()
        except psycopg.errors.InsufficientPrivilege:
            raise StoreOpenError(
                f"state database {self._where} has schema version {version}, this ftwatch needs {SCHEMA_VERSION},"
                " and this role may not change the schema: run 'ftwatch migrate' as its owner"
            ) from None

    def _migrate_from_locked(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS ftwatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM ftwatch_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreOpenError(
                    f"state database {self._where} has schema version {version}, newer than this ftwatch knows"
                    f" ({SCHEMA_VERSION}): run the newer ftwatch, or give this one another [state] url"
                )
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement.encode())  # our own constant DDL
                version += 1
            conn.execute(
                "INSERT INTO ftwatch_meta (key, value) VALUES ('schema_version', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; psycopg's errors become one-line :class:`StoreError`."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            # Rolled back by the transaction block; a broken connection is dropped by
            # the pool, and the next call gets a new one.
            text = scrubbed(str(exc), self._url).strip()
            detail = text.splitlines()[0] if text else type(exc).__name__
            raise StoreError(f"state database {self._where}: {detail}") from None

    def _run(self, work: Callable[[psycopg.Connection[Any]], _T], *, write: bool) -> _T:
        """``work`` on a pooled connection; ``write``: in one transaction."""
        with self._connection() as conn:
            if not write:
                return work(conn)
            with conn.transaction():
                return work(conn)

    def _run_pipelined(self, work: Callable[[psycopg.Connection[Any], psycopg.Pipeline], _T]) -> _T:
        """BEGIN, ``work`` and COMMIT in one pipeline: its statements sent without
        waiting for each answer (one round trip, plus one per ``pipeline.sync()`` in
        ``work``). Not ``conn.transaction()``: in a pipeline it waits for the answer to
        BEGIN, a round trip of its own."""
        with self._connection() as conn:
            try:
                with conn.pipeline() as pipeline:
                    conn.execute("BEGIN")
                    result = work(conn, pipeline)
                    conn.execute("COMMIT")
            except BaseException:
                # After an error the server skipped the rest, COMMIT too: end it here.
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and not conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
            return result

    def close(self) -> None:
        # Bounded: a claim still out (a send cut by the stop) is rolled back by the
        # server when its connection closes.
        self._pool.close(timeout=2.0)

    def schema_version(self) -> int:
        row = self._run(
            lambda c: c.execute("SELECT value FROM ftwatch_meta WHERE key = 'schema_version'").fetchone(), write=False
        )
        return int(row[0]) if row else 0

    def is_fresh(self, namespace: str = "") -> bool:
        row = self._run(
            lambda c: c.execute(
                "SELECT 1 FROM ftwatch_meta WHERE key = %s", (meta_key("baselined", namespace),)
            ).fetchone(),
            write=False,
        )
        return row is None

    def load_scope(self, namespace: str = "") -> str | None:
        row = self._run(
            lambda c: c.execute(
                "SELECT value FROM ftwatch_meta WHERE key = %s", (meta_key("scope", namespace),)
            ).fetchone(),
            write=False,
        )
        return None if row is None else str(row[0])

    def load_models(self) -> dict[str, ModelState]:
        return _sql.model_states(self._run(lambda c: c.execute(_LOAD_MODELS).fetchall(), write=False))

    def commit_cycle(self, commit: CycleCommit) -> int:
        lease = commit.lease

        def work(conn: psycopg.Connection[Any], pipeline: psycopg.Pipeline) -> psycopg.Cursor[Any] | None:
            # Pipelined: the whole cycle reaches the server in one round trip, the
            # lease's answer is read in a second (before COMMIT), however many models
            # and transitions there are.
            renewed = self._renew_in(conn, lease) if lease is not None else None
            with conn.cursor() as cur:
                if commit.models:
                    cur.executemany(_CYCLE.upsert_model, _CYCLE.model_rows(commit))
                if commit.transitions:
                    cur.executemany(_CYCLE.insert_transition, _CYCLE.transition_rows(commit))
                cur.execute(_CYCLE.mark_baselined, (meta_key("baselined", commit.namespace),))
                cur.executemany(_CYCLE.set_meta, _CYCLE.meta_rows(commit))
            queued = conn.cursor() if commit.deliveries else None
            if queued is not None:
                queued.executemany(_CYCLE.insert_delivery, _CYCLE.delivery_rows(commit))
            # The first round trip ends in a Sync (and nothing after it), not the
            # Flush a bare fetch would send: see _HOLD_FOR. After a Flush the server
            # would wait for the rest of the batch with no timeout at all, holding the
            # lease row from every other replica for as long as the cut-off connection
            # lives. The second round trip is COMMIT. No row: another holds the lease,
            # and this rolls back.
            if renewed is not None:
                pipeline.sync()
                if renewed.fetchone() is None:
                    raise _LeaseGoneError
            return queued

        try:
            queued = self._run_pipelined(work)
            # Known once the pipeline has been answered: the rows really inserted (a
            # transition another poller queued first is not counted).
            return 0 if queued is None else max(queued.rowcount, 0)
        except _LeaseGoneError:
            raise LeaseLostError(
                f"the polling lease (term {lease.term if lease else '?'}) is held by another"
            ) from None

    @staticmethod
    def _renew_in(conn: psycopg.Connection[Any], lease: Lease) -> psycopg.Cursor[Any]:
        """The lease renewed first in the cycle's transaction: a leader paused past its
        lease (another has taken it) writes nothing at all."""
        # While it holds the lease row, this transaction may not sit idle for longer
        # than the lease: a leader cut off before its COMMIT has its session ended by
        # the server, and another can lead within the lease.
        conn.execute(_HOLD_FOR, (f"{max(1000, round(lease.lease_s * 1000))}ms",))
        return conn.execute(
            "UPDATE ftwatch_lease SET expires_at = now() + make_interval(secs => %s)"
            " WHERE name = 'poller' AND holder = %s AND term = %s AND expires_at > now() RETURNING term",
            (lease.lease_s, lease.holder, lease.term),
        )

    # --- leadership ------------------------------------------------------------------

    #: Any number of processes may share the database: they elect one poller.
    shared = True

    def acquire_lease(self, holder: str, lease_s: float) -> int | None:
        def work(conn: psycopg.Connection[Any], _: psycopg.Pipeline) -> psycopg.Cursor[Any]:
            # Never wait on the leader's commit (it holds the row for a moment), nor on
            # a leader cut off mid-commit (until the server ends its session).
            conn.execute("SET LOCAL lock_timeout = '1s'")
            return conn.execute(_TAKE_LEASE, {"holder": holder, "lease_s": lease_s})

        try:
            # One round trip: BEGIN, SET, the upsert and COMMIT are pipelined.
            row = self._run_pipelined(work).fetchone()
        except StoreError as exc:
            if "lock timeout" in str(exc):
                return None  # the holder is committing (or cut off): it leads for now
            raise
        return None if row is None else int(row[0])

    def release_lease(self, holder: str, term: int) -> None:
        self._run(
            lambda c: c.execute(
                "UPDATE ftwatch_lease SET holder = NULL, expires_at = now()"
                " WHERE name = 'poller' AND holder = %s AND term = %s",
                (holder, term),
            ),
            write=True,
        )

    def oldest_pending_age(self, now: float) -> float | None:
        row = self._run(
            lambda c: c.execute("SELECT min(created_at) FROM ftwatch_deliveries WHERE state = 'pending'").fetchone(),
            write=False,
        )
        return None if row is None or row[0] is None else max(0.0, now - float(row[0]))

    def save_delivery(self, delivery: Delivery) -> None:
        self._run(lambda c: c.execute(_SAVE, _sql.delivery_params(delivery)), write=True)

    def claim_next(self, notifier: str) -> _RowClaim | Busy | None:
        try:
            conn = self._pool.getconn(timeout=10.0)
        except Exception as exc:  # noqa: BLE001 - the pool's own PoolTimeout, or psycopg's
            raise StoreError(f"state database {self._where}: {_first_line(exc)}") from None
        try:
            # One round trip, one simple query: BEGIN, the bound, the lock and the
            # head. One sender per notifier across every process (order and pacing),
            # for the length of this transaction; another process sees BUSY and waits
            # (the head it may have locked meanwhile is let go with the rollback).
            cur = conn.execute(_LOOK.format(notifier=sql.Literal(notifier)))
            cur.nextset()  # past BEGIN's
            cur.nextset()  # and the bound's
            lock = cur.fetchone()
            cur.nextset()
            head = cur.fetchone()
            if not lock or not lock[0]:
                self._give_back(conn, rollback=True)
                return BUSY
            if head is None:
                self._give_back(conn, rollback=True)
                return None
            conn.execute(_HOLD_FOR, (_SEND_IDLE,))  # a send's length, one round trip per send
        except psycopg.Error as exc:
            self._give_back(conn, broken=True)
            raise StoreError(f"state database {self._where}: {_first_line(exc)}") from None
        return _RowClaim(self, conn, _sql.pending_delivery(notifier, head))

    def _give_back(self, conn: psycopg.Connection[Any], *, rollback: bool = False, broken: bool = False) -> None:
        """Return a claim's connection to the pool, its transaction ended."""
        if rollback or broken:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                broken = True
        if broken:
            conn.close()  # the pool replaces a closed connection
        self._pool.putconn(conn)

    def count_deliveries(self, state: DeliveryState = DeliveryState.PENDING) -> dict[str, int]:
        rows = self._run(
            lambda c: c.execute(
                "SELECT notifier, count(*) FROM ftwatch_deliveries WHERE state = %s GROUP BY notifier", (state.value,)
            ).fetchall(),
            write=False,
        )
        return {str(notifier): int(count) for notifier, count in rows}

    # --- the operator's side ---------------------------------------------------------

    def list_outbox(
        self, state: DeliveryState | None = None, notifier: str | None = None, limit: int = 10_000
    ) -> list[OutboxRow]:
        sql, params = _OUTBOX.listing(state, notifier, limit)
        return _sql.outbox_rows(self._run(lambda c: c.execute(sql.encode(), params).fetchall(), write=False))

    def replay(self, ids: Sequence[str] | None, notifier: str | None, now: float) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            replayed = 0
            for chunk in _OUTBOX.replay_chunks(ids):
                sql, params = _OUTBOX.replay(chunk, notifier, now)
                replayed += max(conn.execute(sql.encode(), params).rowcount, 0)
            return replayed

        return self._run(work, write=True)

    def purge(self, before: float, states: Iterable[DeliveryState] = (DeliveryState.DELIVERED,)) -> int:
        states = tuple(states)
        select, params = _OUTBOX.purge_batch(before, states)
        delete_delivery, still_old, delete_transition = _OUTBOX.purge_delete(before, states)

        def batch(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            keys = conn.execute(select.encode(), params).fetchall()
            removed = 0
            with conn.cursor() as cur:
                if keys:
                    # Pipelined: one round trip for the batch, each row's count kept.
                    with conn.pipeline():
                        cursors = [conn.execute(delete_delivery.encode(), [*still_old, *key]) for key in keys]
                    removed = sum(max(c.rowcount, 0) for c in cursors)
                    cur.executemany(delete_transition.encode(), [(t, t) for _, t in keys])
            return len(keys), removed

        return _OUTBOX.in_batches(lambda: self._run(batch, write=True))

    # --- pushes taken by a replica that is not leading ------------------------------

    def ask_poll(self, source: str) -> None:
        self._run(
            lambda c: c.execute(
                "INSERT INTO ftwatch_meta (key, value) VALUES (%s, 'asked') ON CONFLICT (key) DO NOTHING",
                (_POLL_ASKED + source,),
            ),
            write=False,
        )

    def take_poll_asks(self) -> set[str]:
        rows = self._run(
            lambda c: c.execute(
                "DELETE FROM ftwatch_meta WHERE starts_with(key, %s) RETURNING key", (_POLL_ASKED,)
            ).fetchall(),
            write=False,
        )
        return {str(key).removeprefix(_POLL_ASKED) for (key,) in rows}

    # --- what each replica watches ------------------------------------------------

    def publish_fingerprint(self, holder: str, fingerprint: str, now: float) -> ReplicaView:
        value = json.dumps({"fingerprint": fingerprint, "at": now})

        def work(conn: psycopg.Connection[Any]) -> ReplicaView:
            conn.execute(
                "INSERT INTO ftwatch_meta (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_REPLICA + holder, value),
            )
            return self._replicas(conn, now, forget=True)

        return self._run(work, write=True)

    def replicas(self, now: float) -> ReplicaView:
        return self._run(lambda conn: self._replicas(conn, now, forget=False), write=False)

    def _replicas(self, conn: psycopg.Connection[Any], now: float, *, forget: bool) -> ReplicaView:
        rows = conn.execute("SELECT key, value FROM ftwatch_meta WHERE starts_with(key, %s)", (_REPLICA,)).fetchall()
        lease = conn.execute("SELECT holder FROM ftwatch_lease WHERE name = 'poller' AND expires_at > now()").fetchone()
        fingerprints, stale = {}, []
        for key, value in rows:
            try:
                published = json.loads(value)
                fresh = now - float(published["at"]) < _REPLICA_TTL_S
            except (ValueError, KeyError, TypeError):
                fresh = False
            if fresh:
                fingerprints[str(key).removeprefix(_REPLICA)] = str(published["fingerprint"])
            else:
                stale.append(key)
        if forget and stale:  # replicas long gone: their rows go
            conn.execute("DELETE FROM ftwatch_meta WHERE key = ANY(%s)", (stale,))
        return ReplicaView(lease[0] if lease else None, fingerprints)

    def facts(self) -> StoreFacts:
        def work(conn: psycopg.Connection[Any]) -> StoreFacts:
            polled = conn.execute("SELECT value FROM ftwatch_meta WHERE key = 'last_poll_at'").fetchone()
            counted = conn.execute(
                "SELECT CASE WHEN strpos(model_id, '/') > 0 THEN split_part(model_id, '/', 1) ELSE '' END"
                " AS namespace, gone IS NOT NULL AS is_gone, count(*) FROM ftwatch_models GROUP BY namespace, is_gone"
            ).fetchall()
            lease = conn.execute(
                "SELECT holder, term, expires_at > now() FROM ftwatch_lease WHERE name = 'poller'"
            ).fetchone()
            return StoreFacts(
                float(polled[0]) if polled else None,
                *_sql.split_gone(counted),
                LeaseInfo(lease[0], int(lease[1]), bool(lease[2])) if lease else None,
            )

        return self._run(work, write=False)
