"""Operating ``ftwatch run``: sd_notify, health and metrics, reload, bounded shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ftwatch.sim.cohere import CohereSimulator, running_in_thread

from .conftest import Daemon, free_port, http_status, notifiers_env, wait_for
from .receiver import Answer, Receiver


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.1)
    yield path, sock
    sock.close()


def _datagrams(sock: socket.socket, until: Callable[[list[str]], bool], timeout: float = 15) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; got {got}")
        with contextlib.suppress(TimeoutError):
            got.append(sock.recv(4096).decode())
    return got


def test_sd_notify_ready_watchdog_stopping(
    sim: CohereSimulator,
    base_env: dict[str, str],
    notify_socket: tuple[str, socket.socket],
    daemons: Callable[..., Daemon],
) -> None:
    """READY=1 once the loop runs, STATUS= after polls, WATCHDOG=1 each half interval, STOPPING=1."""
    path, sock = notify_socket
    sim.add_model("m", "STATUS_READY")
    env = {**base_env, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000", **notifiers_env({"type": "stdout"})}
    daemon = daemons(env)
    started = time.monotonic()
    _datagrams(
        sock,
        lambda g: (
            sum("WATCHDOG=1" in m for m in g) >= 2
            and any("READY=1" in m for m in g)
            and any("STATUS=watching 1 model;" in m for m in g)
        ),
    )
    assert time.monotonic() - started < 10
    # Two pings within one watchdog interval (0.6 s): each half-interval at most.
    pings = _datagrams(sock, lambda g: sum(m == "WATCHDOG=1" for m in g) >= 3)
    assert sum(m == "WATCHDOG=1" for m in pings) >= 3
    daemon.send(signal.SIGTERM)
    _datagrams(sock, lambda g: any("STOPPING=1" in m for m in g))
    assert daemon.stop() == 0


def test_ready_while_the_api_is_down_at_boot(
    base_env: dict[str, str], notify_socket: tuple[str, socket.socket], daemons: Callable[..., Daemon]
) -> None:
    """An API outage at boot is READY=1 with the outage in STATUS=, not a start timeout."""
    path, sock = notify_socket
    env = {**base_env, "NOTIFY_SOCKET": path, "CO_API_URL": f"http://127.0.0.1:{free_port()}"}
    daemon = daemons(env)
    got = _datagrams(sock, lambda g: any("READY=1" in m for m in g) and any("cannot be polled" in m for m in g))
    assert any("READY=1" in m for m in got)
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0


def test_sd_notify_to_an_abstract_socket(
    sim: CohereSimulator, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """An @-prefixed NOTIFY_SOCKET is reached in the abstract namespace."""
    name = f"ftwatch-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(0.1)
        daemon = daemons({**base_env, "NOTIFY_SOCKET": "@" + name})
        _datagrams(sock, lambda g: any("READY=1" in m for m in g))
        assert daemon.stop() == 0


def test_health_readiness_and_metrics(
    receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """/healthz, /readyz and /metrics answer as documented, with the API up and down."""
    own = CohereSimulator()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_in_thread(own):
        model = own.add_model("m", "STATUS_QUEUED")
        env = {
            **base_env,
            "CO_API_URL": own.url,
            "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
            **notifiers_env({"type": "webhook", "url": receiver.url}),
        }
        daemon = daemons(env)
        wait_for(lambda: http_status(base + "/readyz") == 200, what="ready")
        assert http_status(base + "/healthz") == 200
        own.set_status(model, "STATUS_READY")
        wait_for(lambda: len(receiver.received) == 1, what="delivery")
        metrics = wait_for(lambda: _metrics_after_delivery(base), what="metrics to move")
        assert 'ftwatch_transitions_total{status="STATUS_READY"} 1.0' in metrics
        assert 'ftwatch_polls_total{outcome="ok"}' in metrics
        assert 'ftwatch_api_requests_total{code="200",endpoint="list_events"}' in metrics
        assert "ftwatch_poll_cycle_seconds_bucket" in metrics
        assert "ftwatch_outbox_pending 0.0" in metrics
        assert 'ftwatch_build_info{version="' in metrics
        assert "ftwatch_last_successful_poll_timestamp_seconds" in metrics
        assert model not in metrics  # model ids are never labels
    # The simulator's port is closed now: not ready, but alive.
    wait_for(lambda: http_status(base + "/readyz") == 503, what="not ready without the API")
    assert http_status(base + "/healthz") == 200
    assert daemon.stop() == 0


def _metrics_after_delivery(base: str) -> str | None:
    text = httpx.get(base + "/metrics", timeout=2).text
    ok = [
        line for line in text.splitlines() if line.startswith("ftwatch_notifications_total") and 'outcome="ok"' in line
    ]
    return text if ok and ok[0].endswith(" 1.0") else None


def test_sighup_adds_a_notifier_and_keeps_state(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    """SIGHUP adds a notifier without a restart and without losing state."""
    second = Receiver().start()
    try:
        model = sim.add_model("m", "STATUS_QUEUED")
        config = tmp_path / "ftwatch.toml"
        config.write_text(f'[[notifiers]]\ntype = "webhook"\nurl = "{receiver.url}"\n')
        env = {k: v for k, v in base_env.items() if k != "FTWATCH_NOTIFIERS"}
        daemon = daemons(env, ["--config", str(config)])
        daemon.wait_log("poll.cycle")
        sim.set_status(model, "STATUS_FINETUNING")
        wait_for(lambda: len(receiver.received) == 1, what="first receiver")

        config.write_text(config.read_text() + f'\n[[notifiers]]\ntype = "webhook"\nurl = "{second.url}"\n')
        daemon.send(signal.SIGHUP)
        daemon.wait_log("reload.done")
        sim.set_status(model, "STATUS_READY")
        wait_for(lambda: len(second.received) == 1 and len(receiver.received) == 2, what="both receivers")
        assert second.bodies()[0]["status"] == "STATUS_READY"
        assert second.bodies()[0]["previous_status"] == "STATUS_FINETUNING"  # cursor kept

        config.write_text("[[notifiers]\nbroken")
        daemon.send(signal.SIGHUP)
        daemon.wait_log("reload.failed")
        sim.set_status(model, "STATUS_PAUSED")
        wait_for(lambda: len(second.received) == 2 and len(receiver.received) == 3, what="old config still in force")
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0
    finally:
        second.stop()


def test_shutdown_is_bounded_and_cut_deliveries_stay_queued(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """SIGTERM stops within the grace period; cut deliveries stay in the outbox."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {
        **base_env,
        "FTWATCH_DELIVERY__SHUTDOWN_GRACE_S": "0.5",
        **notifiers_env({"type": "webhook", "url": receiver.url}),
    }
    receiver.answer(Answer(200, delay_s=30))  # a receiver that hangs
    daemon = daemons(env)
    daemon.wait_log("poll.cycle")
    sim.set_status(model, "STATUS_READY")
    wait_for(lambda: len(receiver.attempts) == 1, what="the POST that hangs")  # an in-flight send
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5

    again = daemons(env)
    wait_for(lambda: len(receiver.received) == 1, what="redelivery after restart")
    again.stop()
    assert [json.loads(r.body)["status"] for r in receiver.received] == ["STATUS_READY"]
