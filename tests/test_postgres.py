"""ftwatch with its state on PostgreSQL, as a user runs it: real server, subprocesses."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import httpx
import psycopg
import pytest

from ftwatch.sim.cohere import CohereSimulator, Fault
from ftwatch.store.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION

from .conftest import POSTGRES, Daemon, TcpProxy, finetuned_once, free_port, hook_env, run_cli, run_once, wait_for
from .receiver import Answer, Receiver


def _pg_env(base_env: dict[str, str], url: str) -> dict[str, str]:
    return {**{k: v for k, v in base_env.items() if k != "FTWATCH_STATE__PATH"}, "FTWATCH_STATE__URL": url}


@pytest.fixture
def pg_env(base_env: dict[str, str], postgres_url: str) -> dict[str, str]:
    """The simulator's environment on a PostgreSQL schema of the test's own."""
    return _pg_env(base_env, postgres_url)


@pytest.fixture
def pg_hooked(base_env: dict[str, str], postgres_url: str, receiver: Receiver) -> dict[str, str]:
    """The simulator's environment on a PostgreSQL schema of the test's own, with one
    webhook notifier to ``receiver``."""
    return hook_env(_pg_env(base_env, postgres_url), receiver)


def test_run_on_postgres_baselines_delivers_and_restarts_without_duplicates(
    sim: CohereSimulator, receiver: Receiver, pg_hooked: dict[str, str]
) -> None:
    """The same story as on SQLite: a baseline, one change sent once, a rerun sends nothing."""
    model = sim.add_model("m", "STATUS_FINETUNING", history=("STATUS_QUEUED",))
    env = pg_hooked
    finetuned_once(sim, model, env, receiver)
    migrated = run_cli(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema version {PG_SCHEMA_VERSION}" in migrated.stderr


def test_a_wrong_database_url_is_exit_2_without_the_password(base_env: dict[str, str], postgres_url: str) -> None:
    """A database that does not exist: one line, exit 2, the password never shown."""
    url = "postgresql://postgres:s3cret-pw@127.0.0.1:5432/no_such_database_here"
    done = run_cli(["run", "--once"], _pg_env(base_env, url))
    assert done.returncode == 2, done.stderr
    assert "no_such_database_here" in done.stderr
    assert "s3cret-pw" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_version_2_database_is_migrated_forward_keeping_its_rows(
    base_env: dict[str, str], postgres_url: str, sim: CohereSimulator, receiver: Receiver
) -> None:
    """A database of the previous build (schema 2, baselined, watching one model):
    `migrate` brings it to this version; `run` goes on from it and sends nothing old."""
    from ftwatch.store import postgres  # noqa: PLC0415

    schema = postgres_url.rpartition("%3D")[2]
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}".encode())
        conn.execute("CREATE TABLE ftwatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for statement in postgres._MIGRATIONS[0] + postgres._MIGRATIONS[1]:
            conn.execute(statement.encode())
        # The old build watched one model: the wider watch now takes the rest as baseline.
        conn.execute(
            """INSERT INTO ftwatch_meta VALUES ('schema_version', '2'), ('baselined', '1'), ('scope', '["ft-old"]')"""
        )
    env = hook_env(_pg_env(base_env, postgres_url), receiver)
    migrated = run_cli(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema version {PG_SCHEMA_VERSION}" in migrated.stderr
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'ftwatch_models'",
            (schema,),
        ).fetchall()
    assert ("stalled",) in columns
    sim.add_model("m", "STATUS_READY")
    run_once(env)
    assert receiver.bodies() == []


def test_a_newer_schema_on_postgres_is_refused(base_env: dict[str, str], postgres_url: str) -> None:
    """A database written by a newer ftwatch: exit 2, one line."""
    schema = postgres_url.rpartition("%3D")[2]
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {schema}.ftwatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)".encode())
        conn.execute(f"INSERT INTO {schema}.ftwatch_meta VALUES ('schema_version', '99')".encode())
    done = run_cli(["run", "--once"], _pg_env(base_env, postgres_url))
    assert done.returncode == 2, done.stderr
    assert "schema version 99" in done.stderr


def test_check_config_shows_the_database_but_not_its_password(base_env: dict[str, str]) -> None:
    """The state URL keeps user, host and database; the password and options are hidden."""
    env = _pg_env(base_env, "postgresql://ftw:hunter2@db.internal:5432/ftwatch?sslmode=require")
    done = run_cli(["check-config"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"]["url"] == "postgresql://ftw@db.internal:5432/ftwatch"
    assert "hunter2" not in done.stdout + done.stderr


@pytest.fixture(autouse=True)
def _needs_postgres(request: pytest.FixtureRequest) -> None:
    """Every test here needs the server (the check-config one only its driver)."""
    if "postgres_url" not in request.fixturenames:
        request.getfixturevalue("postgres_url")


def test_three_replicas_on_one_database_deliver_each_transition_once_in_order(
    sim: CohereSimulator, receiver: Receiver, pg_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """Three `ftwatch run` on one database, 200 transitions: every webhook-id arrives
    exactly once, and each model's arrive in order."""
    models = [sim.add_model(f"m{i}", "STATUS_QUEUED") for i in range(50)]
    env = hook_env(pg_env, receiver, secret="whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=")
    replicas = [daemons(env)]
    replicas[0].wait_log('"poll.cycle"')  # elected, and the baseline taken
    replicas += [daemons(env), daemons(env)]
    for standby in replicas[1:]:
        standby.wait_log('"leader.standby"')  # they deliver all the same
    for status in ("STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_READY", "STATUS_DELETED"):
        for model in models:
            sim.set_status(model, status)
    wait_for(lambda: len(receiver.received) >= 200, timeout=60, what="200 deliveries")
    time.sleep(1.0)  # a duplicate would arrive now
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 200
    assert len(set(ids)) == 200
    for model in models:
        statuses = [b["status"] for b in receiver.bodies() if b["model_id"] == model]
        assert statuses == ["STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_READY", "STATUS_DELETED"]
    assert all(replica.stop() == 0 for replica in replicas)


def test_a_replica_killed_mid_send_gives_its_delivery_to_the_other(
    sim: CohereSimulator, receiver: Receiver, pg_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """SIGKILL the replica whose send is under way: the other sends it, with the same id."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = hook_env(pg_env, receiver, secret="whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=")
    first = daemons(env)
    first.wait_log('"poll.cycle"')
    receiver.answer(Answer(200, delay_s=5.0))  # the first attempt hangs
    sim.set_status(model, "STATUS_READY")
    wait_for(lambda: receiver.attempts, timeout=15, what="the first replica's attempt")
    second = daemons(env)
    second.wait_log('"leader.standby"')  # a standby delivers too
    first.kill()  # mid-send: its claim (row and advisory lock) goes with its connection
    wait_for(lambda: len(receiver.attempts) >= 2, timeout=20, what="the re-send by the second replica")
    assert {r.headers["webhook-id"] for r in receiver.attempts} == {receiver.attempts[0].headers["webhook-id"]}
    assert second.stop() == 0


def _leader_and_standby(
    daemons: Callable[..., Daemon], env: dict[str, str], leader_env: dict[str, str] | None = None
) -> tuple[Daemon, Daemon]:
    """A replica that leads (its baseline taken), then one that stands by."""
    leader = daemons(leader_env or env)
    leader.wait_log('"poll.cycle"')
    standby = daemons(env)
    standby.wait_log('"leader.standby"')
    return leader, standby


def _terms(daemon: Daemon) -> list[int]:
    return [json.loads(x)["term"] for x in daemon.stderr.splitlines() if '"leader.acquired"' in x]


def test_replicas_elect_one_poller_and_sigterm_hands_over_at_once(
    sim: CohereSimulator, receiver: Receiver, pg_hooked: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """Of two replicas one polls (the API sees one watcher's requests); SIGTERM of the
    leader lets the standby lead within a cycle, with a higher term, and nothing is lost."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {**pg_hooked, "FTWATCH_STATE__LEASE_S": "5"}
    first, second = _leader_and_standby(daemons, env)
    before = sim.count("list_models")
    time.sleep(2.0)
    polled = sim.count("list_models") - before
    assert polled <= 2.0 / 0.2 + 2  # one watcher at 0.2 s, not two
    assert '"leader.acquired"' not in second.stderr
    assert first.stop() == 0
    second.wait_log('"leader.acquired"', timeout=5)
    assert _terms(second)[0] > _terms(first)[0]
    sim.set_status(model, "STATUS_READY")
    wait_for(receiver.bodies, timeout=10, what="the new leader's delivery")
    assert second.stop() == 0


def test_an_interval_longer_than_the_lease_keeps_one_leader_and_its_term(
    sim: CohereSimulator, receiver: Receiver, pg_hooked: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """The default interval (30 s) outlasts the default lease (15 s): the leader renews
    between cycles, so the standby never takes over and the term does not grow."""
    sim.add_model("m", "STATUS_QUEUED")
    env = {
        **pg_hooked,
        "FTWATCH_STATE__LEASE_S": "1",
        "FTWATCH_POLL__INTERVAL_S": "2.5",
        "FTWATCH_LOG_LEVEL": "debug",  # quiet cycles are logged at debug
    }
    leader, standby = _leader_and_standby(daemons, env)
    wait_for(lambda: leader.stderr.count('"poll.cycle"') >= 3, timeout=15, what="three cycles of the leader")
    assert _terms(leader) == [1]
    assert '"leader.acquired"' not in standby.stderr
    assert leader.stop() == 0
    assert standby.stop() == 0


def test_a_paused_leader_writes_nothing_when_it_wakes(
    sim: CohereSimulator, receiver: Receiver, pg_hooked: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """SIGSTOP the leader past its lease: the standby leads; SIGCONT: the old leader's
    commit finds the lease gone, writes nothing, and stands by."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {**pg_hooked, "FTWATCH_STATE__LEASE_S": "1"}
    first, second = _leader_and_standby(daemons, env)
    first.send(signal.SIGSTOP)
    second.wait_log('"leader.acquired"', timeout=10)
    sim.set_status(model, "STATUS_READY")
    wait_for(receiver.bodies, timeout=10, what="the delivery by the new leader")
    first.send(signal.SIGCONT)
    first.wait_log('"leader.standby"', timeout=10)
    time.sleep(1.0)
    assert len(receiver.bodies()) == 1
    assert _terms(second)[-1] > _terms(first)[0]
    assert first.stop() == 0
    assert second.stop() == 0


def test_a_postgres_restart_under_a_running_watcher_loses_nothing(
    sim: CohereSimulator, receiver: Receiver, pg_hooked: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """pg_ctlcluster restart while the daemon runs: it reconnects, says so once, and
    the change made meanwhile is delivered once."""
    import subprocess  # noqa: PLC0415

    model = sim.add_model("m", "STATUS_QUEUED")
    daemon = daemons(pg_hooked)
    daemon.wait_log('"poll.cycle"')
    restart = subprocess.run(
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert restart.returncode == 0, restart.stderr
    sim.set_status(model, "STATUS_READY")
    wait_for(receiver.bodies, timeout=30, what="the delivery after the restart")
    time.sleep(1.0)
    assert len(receiver.bodies()) == 1
    assert daemon.proc.poll() is None
    assert daemon.stderr.count('"leader.unknown"') <= 1
    assert daemon.stop() == 0


def test_a_database_down_at_start_is_waited_for(
    sim: CohereSimulator, receiver: Receiver, pg_hooked: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """The server refuses connections when the daemon starts (a port with nobody yet):
    it waits, says so once, and runs as soon as the database answers there."""
    proxy = TcpProxy(("127.0.0.1", 5432))
    model = sim.add_model("m", "STATUS_QUEUED")
    http = f"127.0.0.1:{free_port()}"
    state_url = proxy.in_url(pg_hooked["FTWATCH_STATE__URL"])
    daemon = daemons({**pg_hooked, "FTWATCH_STATE__URL": state_url, "FTWATCH_HTTP__LISTEN": http})
    daemon.wait_log('"store.unreachable"')
    assert daemon.proc.poll() is None
    ready = httpx.get(f"http://{http}/readyz", timeout=5)
    assert ready.status_code == 503
    assert "waiting for the state database" in ready.json()["reason"]
    assert httpx.get(f"http://{http}/healthz", timeout=5).status_code == 200
    proxy.start()  # now the database "comes up" on that port
    try:
        daemon.wait_log('"poll.cycle"', timeout=20)  # the baseline, taken once the database answered
        sim.set_status(model, "STATUS_READY")
        wait_for(receiver.bodies, timeout=15, what="a delivery once the database answered")
        assert daemon.stderr.count('"store.unreachable"') == 1
        wait_for(lambda: httpx.get(f"http://{http}/readyz", timeout=5).status_code == 200, what="ready")
        assert daemon.stop() == 0
    finally:
        proxy.close()


#: Where the partition falls (the answer it falls after): at no chosen moment; inside
#: the leader's commit (its lease renewal, with its bound, reached the server; its
#: COMMIT never will: the server holds the lease row); inside a look at the outbox (the
#: server holds the notifier's lock for it).
_CUTS: dict[str, tuple[bytes, ...]] = {
    "anywhere": (),
    "inside-its-commit": (b"set_config", b"UPDATE 1\x00"),
    "inside-a-claim": (b"pg_try_advisory_xact_lock",),
}


@pytest.mark.parametrize("cut_on", _CUTS.values(), ids=_CUTS.keys())
def test_a_replica_cut_off_from_the_database_stops_polling_and_another_leads(
    sim: CohereSimulator,
    receiver: Receiver,
    pg_hooked: dict[str, str],
    daemons: Callable[..., Daemon],
    *,
    cut_on: tuple[bytes, ...],
) -> None:
    """The leader's connection stops forwarding (a partition: nothing closes), where
    ``_CUTS`` says: the other replica leads within the lease and a cycle, and delivers
    the change once, within seconds; the cut one stays up."""
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    try:
        model = sim.add_model("m", "STATUS_QUEUED")
        env = {**pg_hooked, "FTWATCH_STATE__LEASE_S": "2"}
        through_proxy = {
            **env,
            "FTWATCH_STATE__URL": proxy.in_url(pg_hooked["FTWATCH_STATE__URL"]),
            "FTWATCH_POLL__INTERVAL_S": "2",
        }
        cut_off, other = _leader_and_standby(daemons, env, leader_env=through_proxy)
        if cut_on:
            proxy.cut_on_reply(*cut_on)
            wait_for(proxy.is_cut, timeout=10, what=f"the cut on {cut_on!r}")
        else:
            proxy.cut()
        cut_at = time.monotonic()
        other.wait_log('"leader.acquired"', timeout=15)
        assert time.monotonic() - cut_at < 2 + 2 + 3  # lease + interval, and a margin for a loaded machine
        sim.set_status(model, "STATUS_READY")
        wait_for(receiver.bodies, timeout=10, what="the new leader's delivery")
        time.sleep(1.0)
        assert len(receiver.bodies()) == 1
        assert cut_off.proc.poll() is None
        assert other.stop() == 0
    finally:
        proxy.close()


def test_a_leader_killed_between_reading_and_committing_loses_nothing(
    sim: CohereSimulator, receiver: Receiver, pg_hooked: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """SIGKILL the leader while it reads new events (before its commit): a standby
    leads within lease_s + interval_s, reads them again and delivers them once."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {**pg_hooked, "FTWATCH_STATE__LEASE_S": "2"}
    leader, standby = _leader_and_standby(daemons, env)
    sim.inject(Fault("slow", endpoint="list_events", delay_s=3.0))  # the leader's read hangs
    sim.set_status(model, "STATUS_READY")
    wait_for(lambda: sim.count("list_events") >= 1, timeout=10, what="the leader reading the events")
    leader.kill()
    killed = time.monotonic()
    standby.wait_log('"leader.acquired"', timeout=15)
    assert time.monotonic() - killed < 2 + 0.2 + 3  # lease + interval, and a margin for a loaded machine
    wait_for(receiver.bodies, timeout=15, what="the standby's delivery")
    time.sleep(1.0)
    assert [b["status"] for b in receiver.bodies()] == ["STATUS_READY"]
    assert standby.stop() == 0
