from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import settings

from ftwatch.app import wiring
from ftwatch.settings import Settings
from ftwatch.sim.cohere import DEFAULT_KEY, CohereSimulator, running_in_thread
from ftwatch.sources.base import Source
from ftwatch.store.base import Store
from ftwatch.store.sqlite import SqliteStore

from .pg import POSTGRES, new_schema
from .receiver import Receiver

if TYPE_CHECKING:
    from .providers import World

# A loaded two-core CI machine makes per-example deadlines flaky; the examples are
# bounded by their sizes instead.
settings.register_profile("ftwatch", deadline=None, print_blob=True)
settings.load_profile("ftwatch")

FTWATCH = [sys.executable, "-m", "ftwatch"]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll a condition instead of sleeping for a guessed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sim() -> Iterator[CohereSimulator]:
    simulator = CohereSimulator()
    with running_in_thread(simulator):
        yield simulator


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., CohereSimulator]]:
    """Simulators with options of their own (skewed clocks, say), served until the test ends."""
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> CohereSimulator:
            return stack.enter_context(running_in_thread(CohereSimulator(**options)))

        yield make


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def base_env(sim: CohereSimulator, tmp_path: Path) -> dict[str, str]:
    """An environment that points ftwatch at the simulator with fast timings."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("FTWATCH_", "CO_", "COHERE_", "NOTIFY_", "WATCHDOG_"))
    }
    env.update(
        {
            "CO_API_KEY": DEFAULT_KEY,
            "CO_API_URL": sim.url,
            "FTWATCH_STATE__PATH": str(tmp_path / "state.db"),
            "FTWATCH_HTTP__LISTEN": "",
            "FTWATCH_POLL__INTERVAL_S": "0.2",
            "FTWATCH_COHERE__RETRY_INITIAL_S": "0.02",
            "FTWATCH_COHERE__RETRY_MAX_S": "0.2",
            "FTWATCH_DELIVERY__RETRY_INITIAL_S": "0.05",
            "FTWATCH_DELIVERY__RETRY_MAX_S": "0.2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def quiet_env(tmp_path: Path) -> dict[str, str]:
    """No key of anyone's, no HTTP listener, a state file of the test's own and fast
    delivery retries: each test adds its provider's credentials and sources."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FTWATCH_", "CO_", "OPENAI_", "AWS_"))}
    return env | {
        "FTWATCH_STATE__PATH": str(tmp_path / "state.db"),
        "FTWATCH_DELIVERY__RETRY_INITIAL_S": "0.05",
        "FTWATCH_HTTP__LISTEN": "",
        "PYTHONUNBUFFERED": "1",
    }


def notifiers_env(*notifiers: dict[str, Any]) -> dict[str, str]:
    return {"FTWATCH_NOTIFIERS": json.dumps(list(notifiers))}


def hook_env(base_env: dict[str, str], receiver: Receiver, **extra: object) -> dict[str, str]:
    """The base environment with one webhook notifier to ``receiver``."""
    return {**base_env, **notifiers_env({"type": "webhook", "url": receiver.url, **extra})}


def baselined_job(
    api: World, name: str, env: dict[str, str], tmp_path: Path, receiver: Receiver, status: str | None = None
) -> tuple[str, dict[str, str]]:
    """A job of ``api`` in ``status`` (its simulator's default if none), and the
    environment of a watcher posting to ``receiver`` whose first run took it as history."""
    job = api.add(name, status)
    hooked = hook_env(api.env(env, tmp_path), receiver)
    run_once(hooked)
    return job, hooked


def ready_after_baseline(sim: CohereSimulator, name: str, env: dict[str, str], start: str = "STATUS_QUEUED") -> str:
    """A model in ``start``, taken as history by a first ``run --once`` with ``env``;
    then READY, and a second run that tells of it. Returns the model's id."""
    model = sim.add_model(name, start)
    run_once(env)
    sim.set_status(model, "STATUS_READY")
    run_once(env)
    return model


def finetuned_once(sim: CohereSimulator, model: str, env: dict[str, str], receiver: Receiver) -> None:
    """The story every state and mode must tell of ``model`` (in STATUS_FINETUNING): the
    first run is the baseline and sends nothing, READY is then sent once, a rerun sends
    nothing more."""
    run_once(env)
    assert receiver.bodies() == []
    sim.set_status(model, "STATUS_READY")
    run_once(env)
    run_once(env)
    assert receiver.steps() == [("STATUS_FINETUNING", "STATUS_READY")]


def run_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ftwatch run --once``, which must exit 0: the command line's own ``main`` in
    this process (the same path as the ``ftwatch`` script, but for the interpreter's
    start), for the tests whose subject is what a cycle finds and delivers. The
    command line's own behaviour (exit codes, signals, output) is tested as a
    subprocess, with :func:`run_cli`."""
    done = run_here(["run", "--once"], env)
    assert done.returncode == 0, done.stderr
    return done


def run_here(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ftwatch ARGS`` for a test whose subject is what the configuration or a cycle
    does, not the command line: in this process (:func:`run_in_process`), unless the
    environment puts a plug-in on ``PYTHONPATH``, which only a child can find."""
    same_path = env.get("PYTHONPATH") == os.environ.get("PYTHONPATH")
    return run_in_process(args, env) if same_path else run_cli(args, env)


def run_in_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ftwatch ARGS`` through :func:`ftwatch.app.cli.main` in this process, with
    ``env`` as the whole environment, and its stdout and stderr captured."""
    from ftwatch.app.cli import main  # noqa: PLC0415
    from ftwatch.ops.logs import flush_logs  # noqa: PLC0415

    saved = dict(os.environ)
    on_sigterm = signal.getsignal(signal.SIGTERM)  # main() sets its own for one-shot commands
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
            flush_logs()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        signal.signal(signal.SIGTERM, on_sigterm)
    return subprocess.CompletedProcess([*FTWATCH, *args], code, out.getvalue(), err.getvalue())


def baselined(base_env: dict[str, str], receiver: Receiver) -> dict[str, str]:
    """A webhook environment whose first run (the baseline) is done."""
    env = hook_env(base_env, receiver)
    run_once(env)
    return env


def moved_after_baseline(
    sim: CohereSimulator, base_env: dict[str, str], receiver: Receiver, start: str, to: str
) -> tuple[str, dict[str, str]]:
    """A model in ``start`` taken as history by a first run with a webhook to
    ``receiver``, then moved to ``to`` (not polled yet); its id and the environment."""
    model = sim.add_model("m", start)
    env = baselined(base_env, receiver)
    sim.set_status(model, to)
    return model, env


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FTWATCH, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


class Daemon:
    """``ftwatch run`` as a subprocess, as systemd or a terminal would start it."""

    def __init__(self, env: dict[str, str], args: list[str] | None = None, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [*FTWATCH, "run", *(args or [])],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stopping = False
        self._lines: list[str] = []
        self._out: list[str] = []
        # Both pipes are read as they come: tests wait for a log event on stderr, and
        # a stop never blocks on a pipe (only on the exit, with a bound).
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self._lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self._out), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(pipe: Any, into: list[str]) -> None:
        into.extend(pipe)  # line by line, as they come

    @property
    def stderr(self) -> str:
        return "".join(self._lines)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    def wait_log(self, text: str, count: int = 1, timeout: float = 15.0) -> None:
        wait_for(lambda: self.stderr.count(text) >= count, timeout, what=f"log {text!r}")

    def send(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stopping = True
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Stop it (unless a stop signal was sent already) and wait for its exit code.
        One that outlives ``timeout`` is killed and fails the test with its last words,
        rather than holding the suite."""
        if self.proc.poll() is None and (signum == signal.SIGKILL or not self._stopping):
            self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self._join()
            tail = "".join(self._lines[-15:])
            raise AssertionError(f"ftwatch run did not exit within {timeout} s of signal {signum}:\n{tail}") from None
        self._join()
        return self.proc.returncode

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(env: dict[str, str], args: list[str] | None = None, cwd: Path | None = None) -> Daemon:
        daemon = Daemon(env, args, cwd)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.kill()


def settings_for(sim: CohereSimulator, **sections: dict[str, Any]) -> Settings:
    """Settings aimed at the simulator, with fast retries; ``sections`` add to them."""
    data: dict[str, dict[str, Any]] = {
        "cohere": {"base_url": sim.url, "max_attempts": 4, "retry_initial_s": 0.01, "retry_max_s": 0.05},
        "http": {"listen": ""},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Settings.model_validate(data)


def source_for(
    sim: CohereSimulator, http: Any, *, key: str = DEFAULT_KEY, environ: dict[str, str] | None = None, **cohere: Any
) -> Source:
    """The source the application would build for the simulator, through the wiring."""
    settings = settings_for(sim, cohere=cohere)
    return wiring.build_source(
        settings, wiring.ApiAccess(http, environ={"CO_API_KEY": key} if environ is None else environ)
    )


_HOW = (
    "PostgreSQL on 127.0.0.1:5432 (database test, trust auth) and pip install 'ftwatch[postgres]';"
    " start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)


def _postgres_or_skip() -> None:
    """Skip (say how to run it) without a server or psycopg; fail instead when
    FTWATCH_REQUIRE_POSTGRES=1, as in CI, where nothing may be skipped."""
    try:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(POSTGRES, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        if os.environ.get("FTWATCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here and not usable ({exc}): {_HOW}")
        pytest.skip(f"needs {_HOW}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a schema of its own on the local PostgreSQL, dropped afterwards."""
    _postgres_or_skip()
    schema, url = new_schema(POSTGRES, "ftw_test")
    try:
        yield url
    finally:
        _drop_schema(schema)


#: Sessions that still hold a lock on one of a schema's tables, and what they do.
_HOLDERS = (
    "SELECT DISTINCT a.pid, a.state, a.xact_start, a.state_change, left(a.query, 120)"
    " FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
    " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE n.nspname = %s AND l.pid <> pg_backend_pid()"
)


def _drop_schema(schema: str) -> None:
    """Drop a test's schema without waiting forever: every process of the test is
    gone by now, so a session still holding its tables is a leftover (say which, and
    end it) and must not hold the suite."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '10s'")
        try:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
            return
        except psycopg.errors.LockNotAvailable:
            holders = conn.execute(_HOLDERS.encode(), (schema,)).fetchall()
        for pid, *_ in holders:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
    pytest.fail(f"sessions outlived their test and held schema {schema}: {holders}")


def _postgres_store(url: str) -> Store:
    from ftwatch.store.postgres import PostgresStore  # noqa: PLC0415

    return PostgresStore(url, where="the test database")


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens the backend's store (again, for a restart); closes whatever it opened.
    The store tests run against every backend through this."""
    opened: list[Store] = []
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")

        def make() -> Store:
            return _postgres_store(url)
    else:

        def make() -> Store:
            return SqliteStore(tmp_path / "state.db")

    def open_() -> Store:
        store = make()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        with contextlib.suppress(Exception):
            store.close()


def http_get(url: str) -> httpx.Response | None:
    """A GET of one of the daemon's endpoints; ``None`` while nothing answers there."""
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def http_status(url: str) -> int:
    """The status code of a GET, 0 while nothing answers."""
    answer = http_get(url)
    return answer.status_code if answer is not None else 0


def free_port() -> int:
    """A TCP port nobody listens on (for a receiver that is down, or a listener to come)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 to ``target`` that can stop forwarding without
    closing anything (a network partition, not a refused connection)."""

    def __init__(self, target: tuple[str, int], port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self.url_host = f"127.0.0.1:{self.port}"
        self._cut = threading.Event()
        self._cut_on: tuple[bytes, ...] = ()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def in_url(self, url: str) -> str:
        """``url`` with the target's host and port made the proxy's."""
        host, port = self.target
        return url.replace(f"{host}:{port}", self.url_host)

    def start(self) -> TcpProxy:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.target)
                self._sockets += [client, server]
                threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
                threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if from_server and self._cut_on and all(marker in data for marker in self._cut_on):
                    self._cut.set()  # the server has done the work; its client never hears
                if not self._cut.is_set():  # cut: swallowed, as a partition would
                    sink.sendall(data)

    def cut(self) -> None:
        self._cut.set()

    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut_on_reply(self, *markers: bytes) -> None:
        """Cut as soon as one answer of the server's holds every one of ``markers``
        (command tags, column names): the partition falls exactly there, after that
        round trip and before the next."""
        self._cut_on = markers

    def close(self) -> None:
        """Really close: ``close()`` alone leaves a socket open while another thread
        waits in ``recv`` or ``accept`` on it, and the server would keep the cut
        session (and its locks) for as long as this process lives. ``shutdown``
        wakes those threads, and the server sees its client gone."""
        for sock in [*self._sockets, *([self._listener] if self._listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


# --- how many tests start a subprocess (FTWATCH_COUNT_SUBPROCESSES=1) ---------------
# The share is a figure of the suite's shape: pure logic is tested in process, the CLI
# and the daemon as subprocesses. Counted only when asked, by watching Popen.

_STARTED: set[str] = set()
_RAN: set[str] = set()


@pytest.fixture(autouse=True)
def _count_subprocesses(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.environ.get("FTWATCH_COUNT_SUBPROCESSES") != "1":
        return
    node = request.node.nodeid
    _RAN.add(node)
    original = subprocess.Popen.__init__

    def counted(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        _STARTED.add(node)
        original(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", counted)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _RAN:
        share = len(_STARTED) / len(_RAN)
        terminalreporter.write_line(f"tests that start a subprocess: {len(_STARTED)} of {len(_RAN)} ({share:.0%})")
