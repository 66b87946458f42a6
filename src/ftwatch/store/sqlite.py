"""The embedded :class:`~ftwatch.store.base.Store`: cursors and the outbox in one SQLite file.

Every method is synchronous and thread-safe; async callers go through
``anyio.to_thread.run_sync``. A poll cycle's cursors and transitions are written in
one transaction, before anything is delivered: that is what makes delivery at least
once across SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TypeVar

from ftwatch.model import Transition
from ftwatch.outbox import Delivery, DeliveryState
from ftwatch.store import _sql
from ftwatch.store.base import (
    CycleCommit,
    ModelState,
    OutboxRow,
    StoreError,
    StoreFacts,
    StoreOpenError,
    meta_key,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

#: Our own constant columns, no input: not an injection.
_LOAD_MODELS = f"SELECT {_sql.MODEL_COLUMNS} FROM models"  # noqa: S608
_CYCLE = _sql.CycleSql(_sql.SQLITE)
_OUTBOX = _sql.OutboxSql(_sql.SQLITE)


_T = TypeVar("_T")

#: The state file's schema, in ``PRAGMA user_version``. 0 with tables is the first
#: build's (version 1, which had no number); each step below migrates one version up.
SCHEMA_VERSION = 5

_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE models (
    model_id TEXT PRIMARY KEY,
    name TEXT,
    at_ns INTEGER,
    seen TEXT NOT NULL,
    last_status TEXT,
    lazy INTEGER NOT NULL DEFAULT 0,
    list_status TEXT,
    list_updated TEXT,
    horizon_ns INTEGER,
    undated TEXT NOT NULL DEFAULT '[]',
    stalled TEXT,
    gone TEXT,
    noticed_ns INTEGER,
    progress TEXT
);
CREATE TABLE transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL
);
CREATE TABLE deliveries (
    transition_id TEXT NOT NULL REFERENCES transitions (id),
    notifier TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    last_error TEXT,
    PRIMARY KEY (notifier, transition_id)
);
CREATE INDEX deliveries_pending ON deliveries (notifier, state);
CREATE INDEX deliveries_age ON deliveries (state, created_at);
CREATE INDEX deliveries_transition ON deliveries (transition_id);
"""


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Cursors remember a look-back window of events (time in every key), a horizon
    below which events are history, and undated events."""
    db.execute("ALTER TABLE models ADD COLUMN horizon_ns INTEGER")
    db.execute("ALTER TABLE models ADD COLUMN undated TEXT NOT NULL DEFAULT '[]'")
    rows = db.execute("SELECT model_id, at_ns, seen FROM models").fetchall()
    for model_id, at_ns, seen in rows:
        # Version 1 knew only the events at its newest instant: that is the horizon.
        quads = [[at_ns, status, user, position] for status, user, position in json.loads(seen)] if at_ns else []
        db.execute(
            "UPDATE models SET seen = ?, horizon_ns = ? WHERE model_id = ?", (json.dumps(quads), at_ns, model_id)
        )


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    """Stall alerts remember the stay they were sent for; purges find old rows and
    the transitions left without deliveries by index."""
    db.execute("ALTER TABLE models ADD COLUMN stalled TEXT")
    db.execute("CREATE INDEX deliveries_age ON deliveries (state, created_at)")
    db.execute("CREATE INDEX deliveries_transition ON deliveries (transition_id)")


def _migrate_3_to_4(db: sqlite3.Connection) -> None:
    """Jobs gone from the API's list are marked, and counted apart; a stay's start by
    ftwatch's clock, for providers that date nothing."""
    db.execute("ALTER TABLE models ADD COLUMN gone TEXT")
    db.execute("ALTER TABLE models ADD COLUMN noticed_ns INTEGER")


def _migrate_4_to_5(db: sqlite3.Connection) -> None:
    """A running job's latest progress (step, loss, ETA), where its provider tells."""
    db.execute("ALTER TABLE models ADD COLUMN progress TEXT")


#: Version n -> n + 1.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
    3: _migrate_3_to_4,
    4: _migrate_4_to_5,
}

#: Attempts at a statement that meets "database is locked" after the busy timeout.
_BUSY_ATTEMPTS = 3


def _busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _create_private(path: Path) -> None:
    """Create ``path`` readable by its owner only, unless it exists (then it is kept as is)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _exclusive(path: Path) -> IO[bytes]:
    """Hold an advisory lock beside the state file for as long as the store is open.

    Two daemons on one state file would both deliver every transition; the second
    one is refused instead. The kernel drops the lock when the process dies, so a
    SIGKILL leaves nothing to clean up.
    """
    lock_path = path.parent / f"{path.name}.lock"
    _create_private(lock_path)
    lock_file = lock_path.open("ab")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise StoreOpenError(
            f"state file {path} is in use by another ftwatch process: stop it, or give this one its own [state] path"
        ) from None
    return lock_file


class _FileClaim:
    """One process owns the file (the flock), so a claim needs no lock of its own."""

    def __init__(self, store: SqliteStore, head: tuple[Delivery, Transition]) -> None:
        self._store = store
        self.head = head

    def finish(self, updated: Delivery) -> None:
        self._store.save_delivery(updated)

    def release(self) -> None:
        pass


class SqliteStore:
    """The SQLite state file (WAL mode, one file plus its journal), created 0600.

    ``busy_timeout_s``: how long a statement waits for another client's lock (someone
    querying the file, say) before the attempt counts as failed.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0, beside_daemon: bool = False) -> None:
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        memory = str(path) == ":memory:"
        if beside_daemon and not memory and not path.exists():
            # The operator's commands read what run wrote: they never start a new state.
            raise StoreOpenError(
                f"no state file at {path}: 'ftwatch run' has not run with this [state] path yet;"
                " give the same config (or FTWATCH_STATE__PATH) as the daemon"
            )
        try:
            if not memory:
                if not path.parent.exists():
                    path.parent.mkdir(mode=0o700, parents=True)
                # ``beside_daemon``: an operator's command, next to a running daemon. It
                # takes no flock (that is the daemon's); its short transactions wait out
                # the daemon's like any other client's (WAL: readers never block it).
                self._lock_file = None if beside_daemon else _exclusive(path)
                # SQLite gives the -wal and -shm files the database file's mode.
                _create_private(path)
            # check_same_thread off: worker threads take turns, serialised by _lock.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            self._close_quietly()
            raise StoreOpenError(f"cannot open state file {path}: {exc}; fix [state] path or its permissions") from None
        except StoreOpenError:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        if getattr(self, "_db", None) is not None:
            self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def _migrate(self) -> None:
        """Create the schema, or bring an older one forward, in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            has_tables = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'models'").fetchone() is not None
            if version == 0 and not has_tables:
                # executescript would COMMIT on its own: one statement at a time instead.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                version = SCHEMA_VERSION
            elif version == 0:
                version = 1
            if version > SCHEMA_VERSION:
                raise StoreOpenError(  # noqa: TRY301 - rolled back by the handler below, like any failure
                    f"state file {self.path} has schema version {version}, newer than this ftwatch knows"
                    f" ({SCHEMA_VERSION}): run the newer ftwatch, or give this one another [state] path"
                )
            while version < SCHEMA_VERSION:
                _MIGRATIONS[version](db)
                version += 1
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        return int(self._read(lambda db: db.execute("PRAGMA user_version").fetchone()[0]))

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock

    def _run(self, work: Callable[[sqlite3.Connection], _T], *, write: bool) -> _T:
        """Run ``work`` (in a transaction when it writes), waiting out a busy file a
        few times; any failure rolls back and becomes one :class:`StoreError`."""
        for attempt in range(_BUSY_ATTEMPTS):
            try:
                with self._lock:
                    if not write:
                        return work(self._db)
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        result = work(self._db)
                        self._db.execute("COMMIT")
                    except BaseException:
                        # A failed COMMIT (disk full) leaves the transaction open:
                        # close it, so the next one can begin.
                        if self._db.in_transaction:
                            self._db.execute("ROLLBACK")
                        raise
                    return result
            except sqlite3.Error as exc:
                if _busy(exc) and attempt + 1 < _BUSY_ATTEMPTS:
                    time.sleep(0.1 * 2**attempt)
                    continue
                raise StoreError(f"state file {self.path}: {exc}") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return self._run(work, write=False)

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return self._run(work, write=True)

    # --- cursors -----------------------------------------------------------------

    def is_fresh(self, namespace: str = "") -> bool:
        """True until the first cycle has been committed: that cycle is the baseline."""
        row = self._read(
            lambda db: db.execute("SELECT 1 FROM meta WHERE key = ?", (meta_key("baselined", namespace),)).fetchone()
        )
        return row is None

    def load_scope(self, namespace: str = "") -> str | None:
        """What the last committed cycle watched (see :meth:`commit_cycle`)."""
        row = self._read(
            lambda db: db.execute("SELECT value FROM meta WHERE key = ?", (meta_key("scope", namespace),)).fetchone()
        )
        return None if row is None else str(row[0])

    def load_models(self) -> dict[str, ModelState]:
        return _sql.model_states(self._read(lambda db: db.execute(_LOAD_MODELS).fetchall()))

    def commit_cycle(self, commit: CycleCommit) -> int:
        """Save the cycle's cursors and transitions, and queue each delivery, all in
        one transaction. ``scope`` records what was watched (all models, or which), so
        a wider watch later can tell models it newly covers from new jobs. Returns how
        many deliveries were queued."""

        def work(db: sqlite3.Connection) -> int:
            db.executemany(_CYCLE.upsert_model, _CYCLE.model_rows(commit))
            db.executemany(_CYCLE.insert_transition, _CYCLE.transition_rows(commit))
            queued = db.executemany(_CYCLE.insert_delivery, _CYCLE.delivery_rows(commit))
            db.execute(_CYCLE.mark_baselined, (meta_key("baselined", commit.namespace),))
            db.executemany(_CYCLE.set_meta, _CYCLE.meta_rows(commit))
            return max(queued.rowcount, 0)  # what was queued, not what was asked

        return self._write(work)

    # --- outbox ------------------------------------------------------------------

    def _next_pending(self, notifier: str) -> tuple[Delivery, Transition] | None:
        """The oldest undelivered transition of one notifier: notifiers deliver in order."""
        row = self._read(
            lambda db: db.execute(
                "SELECT d.transition_id, d.created_at, d.attempts, d.next_attempt_at, d.last_error, t.payload"
                " FROM deliveries d JOIN transitions t ON t.id = d.transition_id"
                " WHERE d.notifier = ? AND d.state = 'pending' ORDER BY t.seq LIMIT 1",
                (notifier,),
            ).fetchone()
        )
        return None if row is None else _sql.pending_delivery(notifier, row)

    def save_delivery(self, delivery: Delivery) -> None:
        self._write(
            lambda db: db.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?"
                " WHERE notifier = ? AND transition_id = ?",
                _sql.delivery_params(delivery),
            )
        )

    def count_deliveries(self, state: DeliveryState = DeliveryState.PENDING) -> dict[str, int]:
        """Deliveries in one state, per notifier."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT notifier, count(*) FROM deliveries WHERE state = ? GROUP BY notifier", (state.value,)
            ).fetchall()
        )
        return {str(notifier): int(count) for notifier, count in rows}

    def claim_next(self, notifier: str) -> _FileClaim | None:
        head = self._next_pending(notifier)
        return None if head is None else _FileClaim(self, head)

    #: One process per file (the flock): nobody to elect.
    shared = False

    def acquire_lease(self, holder: str, lease_s: float) -> int | None:
        return 1

    def release_lease(self, holder: str, term: int) -> None:
        pass

    def oldest_pending_age(self, now: float) -> float | None:
        row = self._read(
            lambda db: db.execute("SELECT min(created_at) FROM deliveries WHERE state = 'pending'").fetchone()
        )
        return None if row is None or row[0] is None else max(0.0, now - float(row[0]))

    # --- the operator's side ---------------------------------------------------------

    def list_outbox(
        self, state: DeliveryState | None = None, notifier: str | None = None, limit: int = 10_000
    ) -> list[OutboxRow]:
        sql, params = _OUTBOX.listing(state, notifier, limit)
        return _sql.outbox_rows(self._read(lambda db: db.execute(sql, params).fetchall()))

    def replay(self, ids: Sequence[str] | None, notifier: str | None, now: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            replayed = 0
            for chunk in _OUTBOX.replay_chunks(ids):
                sql, params = _OUTBOX.replay(chunk, notifier, now)
                replayed += db.execute(sql, params).rowcount
            return replayed

        return self._write(work)

    def purge(self, before: float, states: Iterable[DeliveryState] = (DeliveryState.DELIVERED,)) -> int:
        states = tuple(states)
        select, params = _OUTBOX.purge_batch(before, states)
        delete_delivery, still_old, delete_transition = _OUTBOX.purge_delete(before, states)

        def batch(db: sqlite3.Connection) -> tuple[int, int]:
            keys = db.execute(select, params).fetchall()
            removed = sum(db.execute(delete_delivery, [*still_old, *key]).rowcount for key in keys)
            db.executemany(delete_transition, [(t, t) for _, t in keys])
            return len(keys), removed

        return _OUTBOX.in_batches(lambda: self._write(batch))

    def facts(self) -> StoreFacts:
        def work(db: sqlite3.Connection) -> StoreFacts:
            polled = db.execute("SELECT value FROM meta WHERE key = 'last_poll_at'").fetchone()
            counted = db.execute(
                "SELECT CASE WHEN instr(model_id, '/') > 0 THEN substr(model_id, 1, instr(model_id, '/') - 1)"
                " ELSE '' END AS namespace, gone IS NOT NULL, count(*) FROM models GROUP BY namespace, gone IS NOT NULL"
            ).fetchall()
            return StoreFacts(float(polled[0]) if polled else None, *_sql.split_gone(counted), None)

        return self._read(work)
