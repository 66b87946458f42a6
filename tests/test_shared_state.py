"""Shared state on PostgreSQL under races, narrow grants and odd input (issue 17,
items 9-13), with the real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from ftwatch.outbox import DeliveryState, Route
from ftwatch.store.base import CycleCommit, Store

from .conftest import _postgres_store, run_cli
from .rows import transition as _transition


def _dead_letters(store: Store, url: str, count: int) -> None:
    store.commit_cycle(CycleCommit.of({}, [_transition(n) for n in range(count)], [Route("hook")], now=0.0))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE ftwatch_deliveries SET state = 'dead'")


def test_a_purge_never_deletes_rows_a_replay_moved_back_to_pending_meanwhile(postgres_url: str) -> None:
    store = _postgres_store(postgres_url)
    try:
        _dead_letters(store, postgres_url, 50)
        with psycopg.connect(postgres_url) as replaying:
            # A replay --dead that has moved the rows but not committed yet: the
            # purge selects them as dead, then waits for their locks.
            replaying.execute(
                "UPDATE ftwatch_deliveries SET state = 'pending', attempts = 0, created_at = %s WHERE state = 'dead'",
                (time.time(),),
            )
            removed: list[int] = []
            purge = threading.Thread(
                target=lambda: removed.append(store.purge(1_000.0, (DeliveryState.DEAD, DeliveryState.DELIVERED)))
            )
            purge.start()
            time.sleep(0.5)
            replaying.commit()
            purge.join(timeout=20)
        assert removed == [0]
        assert store.count_deliveries() == {"hook": 50}
    finally:
        store.close()


def test_a_replay_of_more_ids_than_a_statement_can_bind_works(postgres_url: str) -> None:
    store = _postgres_store(postgres_url)
    try:
        _dead_letters(store, postgres_url, 10)
        ids = [f"t{n}" for n in range(10)] + [f"nothing-{n}" for n in range(70_000)]
        assert store.replay(ids, None, time.time()) == 10
        assert store.count_deliveries() == {"hook": 10}
    finally:
        store.close()


def test_a_password_with_a_bad_escape_never_shows_in_the_error(base_env: dict[str, str], postgres_url: str) -> None:
    env = {k: v for k, v in base_env.items() if k != "FTWATCH_STATE__PATH"}
    for password in ("hunter%zz2secret", "pa%2"):
        url = f"postgresql://postgres:{password}@127.0.0.1:5432/test"
        done = run_cli(["status"], env | {"FTWATCH_STATE__URL": url})
        assert done.returncode == 2, done.stderr
        assert "%25" in done.stderr  # names the fix
        for part in (password, "hunter", "secret"):
            assert part not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


@pytest.fixture
def narrow_role(postgres_url: str) -> Callable[[], str]:
    """A role with SELECT/INSERT/UPDATE/DELETE on the tables `ftwatch migrate` made."""
    schema = postgres_url.rpartition("%3D")[2]
    role = f"ftw_app_{schema[-12:]}"

    def make() -> str:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN".encode())
            conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}".encode())
            conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}".encode())
            conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}".encode())
        return postgres_url.replace("postgresql://postgres@", f"postgresql://{role}@")

    yield make
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}".encode())
        conn.execute(f"DROP ROLE IF EXISTS {role}".encode())


def test_a_role_with_only_the_data_grants_runs_and_reads_status_after_migrate(
    base_env: dict[str, str], postgres_url: str, narrow_role: Callable[[], str]
) -> None:
    env = {k: v for k, v in base_env.items() if k != "FTWATCH_STATE__PATH"}
    owner = env | {"FTWATCH_STATE__URL": postgres_url}
    assert run_cli(["migrate"], owner).returncode == 0
    app = env | {"FTWATCH_STATE__URL": narrow_role()}
    for command in (["run", "--once"], ["status"], ["run", "--once"]):
        done = run_cli(command, app)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    # A schema behind this build, and a role that may not change it: one line, exit 2.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE ftwatch_meta SET value = '2' WHERE key = 'schema_version'")
    behind = run_cli(["run", "--once"], app)
    assert behind.returncode == 2, behind.stderr
    assert "ftwatch migrate" in behind.stderr
    assert len(behind.stderr.strip().splitlines()) == 1
