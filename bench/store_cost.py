"""What the state costs per poll cycle, SQLite against PostgreSQL: wall time, CPU,
and (PostgreSQL) round trips, counted on the wire by bench/roundtrips.py.

    python -m bench.store_cost [--models 2000 10000] [--url postgresql://postgres@127.0.0.1:5432/test]

Each figure is one store call as the poll loop makes it, on a state that already
holds --models models: the leader's commit of a steady cycle (no model changed),
one where every model's cursor moved, cycles with 1, 10 and 100 transitions for two
notifiers; taking the lease; and a notifier's idle look at the outbox.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftwatch.diff import Cursor
from ftwatch.model import Transition, format_timestamp
from ftwatch.outbox import Route
from ftwatch.store.base import CycleCommit, Lease, ModelState, Store
from ftwatch.store.sqlite import SqliteStore

from .roundtrips import RoundTripProxy

ROUTES = [Route("webhook-a"), Route("slack-b")]


def models(n: int, at_ns: int) -> dict[str, ModelState]:
    return {
        f"ft-{i:06d}": ModelState(
            Cursor(at_ns, frozenset({(at_ns, "STATUS_READY", None, 0)}), "STATUS_READY", horizon_ns=at_ns),
            name=f"model {i}",
            list_status="STATUS_READY",
            list_updated=format_timestamp(at_ns),
        )
        for i in range(n)
    }


def transitions(n: int, tag: str) -> list[Transition]:
    now = format_timestamp(time.time_ns())
    return [
        Transition(f"ftw_{tag}_{i}", f"ft-{i:06d}", f"model {i}", "STATUS_READY", "STATUS_PAUSED", now, None, now)
        for i in range(n)
    ]


def measure(label: str, call: Callable[[], Any], proxy: RoundTripProxy | None) -> None:
    before = proxy.count() if proxy else 0
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    trips = f"{proxy.count() - before:>4} round trips" if proxy else "   - round trips"
    print(f"  {label:<52} {trips}  {wall * 1000:8.1f} ms wall  {cpu * 1000:7.1f} ms CPU")


def run(store: Store, n: int, proxy: RoundTripProxy | None) -> None:
    at = time.time_ns()
    store.commit_cycle(CycleCommit.of(models(n, at), [], ROUTES, time.time(), scope="all"))
    holder = "bench"
    term = store.acquire_lease(holder, 15.0) or 1
    lease = Lease(holder, term, 15.0) if store.shared else None
    measure("take or renew the lease", lambda: store.acquire_lease(holder, 15.0), proxy)
    steady: dict[str, ModelState] = {}
    measure(
        "steady cycle: nothing changed",
        lambda: store.commit_cycle(CycleCommit.of(steady, [], ROUTES, time.time(), lease=lease)),
        proxy,
    )
    moved = models(n, at + 1_000)
    measure(
        f"every cursor moved ({n} models)",
        lambda: store.commit_cycle(CycleCommit.of(moved, [], ROUTES, time.time(), lease=lease)),
        proxy,
    )
    for k in (1, 10, 100):
        changed = dict(list(models(k, at + 2_000 + k).items()))
        batch = transitions(k, f"{n}_{k}")
        measure(
            f"{k} model(s) changed, {k} transition(s) x 2 notifiers",
            lambda changed=changed, batch=batch: store.commit_cycle(
                CycleCommit.of(changed, batch, ROUTES, time.time(), lease=lease)
            ),
            proxy,
        )

    def idle_look() -> None:
        claim = store.claim_next("nobody")
        if claim not in (None, "busy"):
            claim.release()  # type: ignore[union-attr]

    measure("a notifier's idle look at the outbox", idle_look, proxy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    from ftwatch.store.postgres import PostgresStore  # noqa: PLC0415 - psycopg only here

    from .replicas import schema  # noqa: PLC0415

    for n in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"SQLite, {n} models")
            sqlite = SqliteStore(Path(tmp) / "state.db")
            try:
                run(sqlite, n, None)
            finally:
                sqlite.close()
        with schema(args.url) as scoped:
            proxy = RoundTripProxy(scoped)
            print(f"PostgreSQL, {n} models")
            pg = PostgresStore(proxy.url, where="bench")
            try:
                run(pg, n, proxy)
            finally:
                pg.close()
                proxy.close()


if __name__ == "__main__":
    main()
