"""The state file: per-model cursors and the outbox, in one SQLite database.

Every method is synchronous and thread-safe; async callers go through
``anyio.to_thread.run_sync``. A poll cycle's cursors and transitions are written in
one transaction, before anything is delivered: that is what makes delivery at least
once across SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ftwatch.diff import Cursor
from ftwatch.errors import ConfigError
from ftwatch.model import Transition
from ftwatch.outbox import Delivery, DeliveryState, Route

__all__ = ["ModelState", "Store", "StoreError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    name TEXT,
    at_ns INTEGER,
    seen TEXT NOT NULL,
    last_status TEXT,
    lazy INTEGER NOT NULL DEFAULT 0,
    list_status TEXT,
    list_updated TEXT
);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    transition_id TEXT NOT NULL REFERENCES transitions (id),
    notifier TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    last_error TEXT,
    PRIMARY KEY (notifier, transition_id)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (notifier, state);
"""


class StoreError(ConfigError):
    """The state file cannot be opened or written: exit 2, like any bad setting."""


def _exclusive(path: Path) -> IO[bytes]:
    """Hold an advisory lock beside the state file for as long as the store is open.

    Two daemons on one state file would both deliver every transition; the second
    one is refused instead. The kernel drops the lock when the process dies, so a
    SIGKILL leaves nothing to clean up.
    """
    lock_file = (path.parent / f"{path.name}.lock").open("ab")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise StoreError(
            f"state file {path} is in use by another ftwatch process: stop it, or give this one its own [state] path"
        ) from None
    return lock_file


@dataclass(frozen=True, slots=True)
class ModelState:
    """What the store keeps of one model: its cursor, its name, and how the list showed it."""

    cursor: Cursor
    name: str | None = None
    list_status: str | None = None
    list_updated: str | None = None


class Store:
    """The SQLite state file (WAL mode, one file plus its journal)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_file: IO[bytes] | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if str(path) != ":memory:":
                self._lock_file = _exclusive(path)
            # check_same_thread off: worker threads take turns, serialised by _lock.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open state file {path}: {exc}; fix [state] path or its permissions") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- cursors -----------------------------------------------------------------

    def is_fresh(self) -> bool:
        """True until the first cycle has been committed: that cycle is the baseline."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM meta WHERE key = 'baselined'").fetchone()
        return row is None

    def load_models(self) -> dict[str, ModelState]:
        with self._lock:
            rows = self._db.execute(
                "SELECT model_id, name, at_ns, seen, last_status, lazy, list_status, list_updated FROM models"
            ).fetchall()
        return {
            model_id: ModelState(
                cursor=Cursor(at_ns, frozenset((s, u, p) for s, u, p in json.loads(seen)), last_status, bool(lazy)),
                name=name,
                list_status=list_status,
                list_updated=list_updated,
            )
            for model_id, name, at_ns, seen, last_status, lazy, list_status, list_updated in rows
        }

    def commit_cycle(
        self,
        models: Mapping[str, ModelState],
        transitions: Sequence[Transition],
        routes: Iterable[Route],
        now: float,
    ) -> int:
        """Save the cycle's cursors and transitions, and queue each transition for
        every notifier that wants it, all in one transaction. Returns how many
        deliveries were queued."""
        route_list = list(routes)
        queued = 0
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO models (model_id, name, at_ns, seen, last_status, lazy, list_status, list_updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (model_id) DO UPDATE SET name = excluded.name, at_ns = excluded.at_ns,"
                " seen = excluded.seen, last_status = excluded.last_status, lazy = excluded.lazy,"
                " list_status = excluded.list_status, list_updated = excluded.list_updated",
                [
                    (
                        model_id,
                        state.name,
                        state.cursor.at_ns,
                        json.dumps(sorted(state.cursor.seen_at_last)),
                        state.cursor.last_status,
                        int(state.cursor.lazy),
                        state.list_status,
                        state.list_updated,
                    )
                    for model_id, state in models.items()
                ],
            )
            for transition in transitions:
                db.execute(
                    "INSERT OR IGNORE INTO transitions (id, payload) VALUES (?, ?)",
                    (transition.id, json.dumps(transition.to_payload())),
                )
                rows = [
                    (transition.id, route.key, DeliveryState.PENDING.value, now)
                    for route in route_list
                    if route.wants(transition)
                ]
                db.executemany(
                    "INSERT OR IGNORE INTO deliveries (transition_id, notifier, state, created_at) VALUES (?, ?, ?, ?)",
                    rows,
                )
                queued += len(rows)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('baselined', '1')")
        return queued

    # --- outbox ------------------------------------------------------------------

    def next_pending(self, notifier: str) -> tuple[Delivery, Transition] | None:
        """The oldest undelivered transition of one notifier: notifiers deliver in order."""
        with self._lock:
            row = self._db.execute(
                "SELECT d.transition_id, d.created_at, d.attempts, d.next_attempt_at, d.last_error, t.payload"
                " FROM deliveries d JOIN transitions t ON t.id = d.transition_id"
                " WHERE d.notifier = ? AND d.state = 'pending' ORDER BY t.seq LIMIT 1",
                (notifier,),
            ).fetchone()
        if row is None:
            return None
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

    def save_delivery(self, delivery: Delivery) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?"
                " WHERE notifier = ? AND transition_id = ?",
                (
                    delivery.state.value,
                    delivery.attempts,
                    delivery.next_attempt_at,
                    delivery.last_error,
                    delivery.notifier,
                    delivery.transition_id,
                ),
            )

    def count_deliveries(self, state: DeliveryState = DeliveryState.PENDING) -> dict[str, int]:
        """Deliveries in one state, per notifier."""
        with self._lock:
            rows = self._db.execute(
                "SELECT notifier, count(*) FROM deliveries WHERE state = ? GROUP BY notifier", (state.value,)
            ).fetchall()
        return dict(rows)
