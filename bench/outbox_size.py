"""The outbox with a million delivered rows: is the next pending delivery still quick,
and what does a purge cost?

    python -m bench.outbox_size [--rows 1000000] [--url postgresql://postgres@127.0.0.1:5432/test]

The rows are written by SQL (generate_series / a recursive CTE), as a year of
deliveries would have left them: all delivered but the last few, which are pending.
Then: the dispatcher's look at a notifier's head (claim_next, and a release as when
the head is not due yet) timed over many calls, the listing of one state,
and purging the delivered rows older than a cut-off (half of them).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.rows import head_of

from ftwatch.outbox import DeliveryState
from ftwatch.store.base import Store
from ftwatch.store.sqlite import SqliteStore

from .common import percentile

PENDING = 5

_SQLITE_FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
INSERT INTO transitions (id, payload) SELECT 'ftw_' || i, json_object(
  'id', 'ftw_' || i, 'type', 'finetuned_model.status_changed', 'model_id', 'ft-' || (i % 5000),
  'model_name', 'model', 'status', 'STATUS_READY', 'previous_status', 'STATUS_PAUSED',
  'occurred_at', '2026-01-01T00:00:00.000000Z', 'user_id', NULL, 'detected_at', '2026-01-01T00:00:00.000Z')
FROM n;
INSERT INTO deliveries (transition_id, notifier, state, attempts, created_at)
SELECT id, 'webhook-bench', CASE WHEN seq > {rows} - {pending} THEN 'pending' ELSE 'delivered' END, 1, seq
FROM transitions;
"""

_PG_FILL = [
    """INSERT INTO ftwatch_transitions (id, payload) SELECT 'ftw_' || i, json_build_object(
  'id', 'ftw_' || i, 'type', 'finetuned_model.status_changed', 'model_id', 'ft-' || (i % 5000),
  'model_name', 'model', 'status', 'STATUS_READY', 'previous_status', 'STATUS_PAUSED',
  'occurred_at', '2026-01-01T00:00:00.000000Z', 'user_id', NULL, 'detected_at', '2026-01-01T00:00:00.000Z')::text
FROM generate_series(1, {rows}) AS i""",
    """INSERT INTO ftwatch_deliveries (transition_id, notifier, state, attempts, created_at)
SELECT id, 'webhook-bench', CASE WHEN seq > {rows} - {pending} THEN 'pending' ELSE 'delivered' END, 1, seq
FROM ftwatch_transitions""",
    "ANALYZE",
]


def timed(call: Callable[[], object], n: int) -> tuple[float, float]:
    """Median and p99 of ``n`` calls, in milliseconds."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), percentile(times, 99)


def measure(label: str, store: Store, rows: int) -> None:
    print(f"{label}: {rows} deliveries, {PENDING} of them pending")
    median, p99 = timed(lambda: head_of(store, "webhook-bench"), 500)
    print(f"  claim_next + release: median {median:.2f} ms, p99 {p99:.2f} ms")
    median, _ = timed(lambda: store.list_outbox(DeliveryState.PENDING), 20)
    print(f"  list pending:        median {median:.2f} ms")
    started = time.perf_counter()
    removed = store.purge(rows / 2)
    print(f"  purge of the older half: {removed} rows in {time.perf_counter() - started:.1f} s")
    median, p99 = timed(lambda: head_of(store, "webhook-bench"), 500)
    print(f"  claim_next + release after: median {median:.2f} ms, p99 {p99:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", help="also on PostgreSQL (a schema of its own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        SqliteStore(path).close()  # the schema
        import sqlite3  # noqa: PLC0415

        started = time.perf_counter()
        with sqlite3.connect(path) as db:
            db.executescript(_SQLITE_FILL.format(rows=args.rows, pending=PENDING))
        print(f"(SQLite filled in {time.perf_counter() - started:.0f} s; {path.stat().st_size / 1e6:.0f} MB)")
        store = SqliteStore(path)
        try:
            measure("SQLite", store, args.rows)
        finally:
            store.close()
    if args.url:
        import psycopg  # noqa: PLC0415

        from ftwatch.store.postgres import PostgresStore  # noqa: PLC0415

        from .replicas import schema  # noqa: PLC0415

        with schema(args.url) as scoped:
            PostgresStore(scoped, where="bench").close()
            started = time.perf_counter()
            with psycopg.connect(scoped, autocommit=True) as conn:
                for statement in _PG_FILL:
                    conn.execute(statement.format(rows=args.rows, pending=PENDING).encode())
            print(f"(PostgreSQL filled in {time.perf_counter() - started:.0f} s)")
            pg = PostgresStore(scoped, where="bench")
            try:
                measure("PostgreSQL", pg, args.rows)
            finally:
                pg.close()


if __name__ == "__main__":
    main()
