"""The push endpoint faces the internet: big, slow, odd and stormy posts bound what
they cost, and polling and the health probes go on meanwhile (issue 17, items 1-5)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ftwatch.standard_webhooks import sign
from tests.conftest import Daemon, free_port, run_cli, wait_for
from tests.providers import World, world
from tests.receiver import Receiver
from tests.test_push import SECRET, push_env

__all__ = ["push_env"]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _signed(body: bytes, msg_id: str, stamp: str | None = None) -> dict[str, str]:
    now = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp if stamp is not None else str(now),
        "webhook-signature": sign(SECRET, msg_id, now, body),
    }


def _ended(job: str, msg_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"id": msg_id, "type": "fine_tuning.job.succeeded", "data": {"id": job}}).encode()
    return body, _signed(body, msg_id)


@pytest.fixture
def pushed_daemon(push_env: dict[str, str], tmp_path: Path, receiver: Receiver) -> Iterator[tuple[World, Daemon, int]]:
    with world("openai") as api:
        api.add("watched", "running")
        port = free_port()
        env = api.env(push_env, tmp_path, webhook={"secret": SECRET}) | {
            "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
            "FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}]),
        }
        daemon = Daemon(env)
        try:
            daemon.wait_log("poll.cycle")
            yield api, daemon, port
        finally:
            assert daemon.stop() == 0


def test_a_huge_body_is_refused_by_its_length_and_a_chunked_one_cut_at_the_cap(
    pushed_daemon: tuple[World, Daemon, int],
) -> None:
    _, daemon, port = pushed_daemon
    url = f"http://127.0.0.1:{port}/webhooks/openai"
    before = _rss_kb(daemon.proc.pid)
    # Declared too big: refused before a byte of the body is read.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(
            b"POST /webhooks/openai HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 300000000\r\n\r\n"
        )
        assert conn.recv(200).startswith(b"HTTP/1.1 413")

    def chunks() -> Iterator[bytes]:
        for _ in range(200):  # 200 MB, chunked: no length to judge by
            yield b"x" * 1_000_000

    try:
        answer = httpx.post(url, content=chunks(), timeout=30)
        assert answer.status_code == 413
    except httpx.TransportError:
        pass  # the server closed the connection at the cap, mid-upload: as good
    time.sleep(0.5)
    grown_mb = (_rss_kb(daemon.proc.pid) - before) / 1024
    assert grown_mb < 8, f"the daemon grew by {grown_mb:.0f} MB"
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'ftwatch_webhook_pushes_total{outcome="rejected",source="openai"} 2.0' in metrics


def test_slow_bodies_are_cut_off_turned_away_past_the_cap_and_health_and_polling_go_on(
    pushed_daemon: tuple[World, Daemon, int],
) -> None:
    api, daemon, port = pushed_daemon
    slow: list[socket.socket] = []
    head = (
        b"POST /webhooks/openai HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    try:
        for _ in range(80):  # more than the 64 read at once
            conn = socket.create_connection(("127.0.0.1", port), timeout=20)
            conn.sendall(head + b"{")
            slow.append(conn)
        # The connections past the cap are answered 503 at once.
        turned_away = 0
        for conn in slow:
            conn.settimeout(0.05)
            try:
                if conn.recv(100).startswith(b"HTTP/1.1 503"):
                    turned_away += 1
            except TimeoutError:
                pass
        assert turned_away >= 80 - 64
        # Health and polling meanwhile.
        started = time.monotonic()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        lists = api.sim.count("list_models")
        # A byte every second does not keep a body alive: cut within its timeout.
        deadline = time.monotonic() + 16
        open_ones = list(slow)
        while open_ones and time.monotonic() < deadline:
            still = []
            for conn in open_ones:
                conn.settimeout(0.01)
                try:
                    data = conn.recv(200)
                except TimeoutError:
                    try:
                        conn.sendall(b" ")
                    except OSError:
                        continue
                    still.append(conn)
                    continue
                except OSError:
                    continue
                if not data or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 503"):
                    continue
                still.append(conn)
            open_ones = still
            time.sleep(1.0)
        assert not open_ones, f"{len(open_ones)} slow connections still held open"
        assert api.sim.count("list_models") >= lists  # polling never stopped
    finally:
        for conn in slow:
            conn.close()
    assert "Traceback" not in daemon.stderr
    assert '"level": "error"' not in daemon.stderr


def test_a_connection_sending_its_headers_a_byte_at_a_time_is_closed(pushed_daemon: tuple[World, Daemon, int]) -> None:
    _, _, port = pushed_daemon
    request = b"POST /webhooks/openai HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        deadline = time.monotonic() + 15
        closed = False
        for byte in request:
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            conn.settimeout(1.0)
            try:
                if conn.recv(100) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            if time.monotonic() > deadline:
                break
        assert closed, "a header sent a byte a second kept its connection for 15 s"


def test_non_ascii_digits_in_the_timestamp_are_a_400_not_a_500(pushed_daemon: tuple[World, Daemon, int]) -> None:
    api, daemon, port = pushed_daemon
    body, headers = _ended(api.ids["watched"], "evt_sup")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        lines = [
            b"POST /webhooks/openai HTTP/1.1",
            b"Host: x",
            b"Content-Type: application/json",
            b"Content-Length: " + str(len(body)).encode(),
            b"webhook-id: evt_sup",
            b"webhook-timestamp: \xb2\xb3",  # superscript two and three, as Latin-1
            b"webhook-signature: " + headers["webhook-signature"].encode(),
        ]
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        assert conn.recv(200).startswith(b"HTTP/1.1 400")
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'ftwatch_webhook_pushes_total{outcome="rejected",source="openai"} 1.0' in metrics
    assert "Traceback" not in daemon.stderr


def test_a_storm_of_pushes_makes_few_cycles_of_that_source_only_and_foreign_jobs_none(
    push_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as api, world("cohere") as cohere:
        watched = api.add("watched", "running")
        stranger = api.add("stranger", "running")
        cohere.add("model")
        port = free_port()
        sources = [api.source(webhook={"secret": SECRET}, models=[watched]), cohere.source()]
        env = (
            push_env
            | api.credentials(tmp_path)
            | cohere.credentials(tmp_path)
            | {
                "FTWATCH_SOURCES": json.dumps(sources),
                "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
                "FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}]),
            }
        )
        daemon = Daemon(env)
        try:
            daemon.wait_log("poll.cycle")
            time.sleep(0.5)
            openai_before, cohere_before = api.sim.count("get_model"), cohere.sim.count()
            url = f"http://127.0.0.1:{port}/webhooks/openai"
            for n in range(20):
                body, headers = _ended(watched, f"evt_{n}")
                assert httpx.post(url, content=body, headers=headers).status_code == 200
                time.sleep(0.1)
            time.sleep(2.5)  # the last coalescing window
            # One configured job: each cycle of the source asks for it once.
            extra = api.sim.count("get_model") - openai_before
            assert 1 <= extra <= 3, f"20 pushes in 2 s made {extra} cycles"
            assert cohere.sim.count() == cohere_before  # the other source was not polled
            # A job outside the source's models asks for nothing.
            quiet = api.sim.count("get_model")
            body, headers = _ended(stranger, "evt_stranger")
            answer = httpx.post(url, content=body, headers=headers)
            assert answer.json()["note"] == "not a job this source watches"
            time.sleep(2.5)
            assert api.sim.count("get_model") == quiet
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert 'ftwatch_webhook_pushes_total{outcome="ignored",source="openai"} 1.0' in metrics
        finally:
            assert daemon.stop() == 0


def _on_postgres(env: dict[str, str], url: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "FTWATCH_STATE__PATH"} | {"FTWATCH_STATE__URL": url}


def test_a_push_to_a_standby_makes_the_leader_poll_within_seconds(
    push_env: dict[str, str], tmp_path: Path, receiver: Receiver, postgres_url: str, daemons: Callable[..., Daemon]
) -> None:
    with world("openai") as api:
        job = api.add("pushed", "running")
        env = api.env(_on_postgres(push_env, postgres_url), tmp_path, webhook={"secret": SECRET}) | {
            "FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}]),
        }
        leader_port, standby_port = free_port(), free_port()
        leader = daemons(env | {"FTWATCH_HTTP__LISTEN": f"127.0.0.1:{leader_port}"})
        leader.wait_log('"poll.cycle"')
        standby = daemons(env | {"FTWATCH_HTTP__LISTEN": f"127.0.0.1:{standby_port}"})
        standby.wait_log('"leader.standby"')
        time.sleep(1.0)
        api.move(job, "succeeded")
        body, headers = _ended(job, "evt_standby")
        started = time.monotonic()
        answer = httpx.post(f"http://127.0.0.1:{standby_port}/webhooks/openai", content=body, headers=headers)
        assert answer.status_code == 200
        wait_for(lambda: receiver.received, timeout=10, what="the leader's poll after a push to the standby")
        assert time.monotonic() - started < 5  # not the 60 s interval
        assert receiver.received[0].json()["status"] == "succeeded"
        assert standby.stop() == 0
        assert leader.stop() == 0


def test_replicas_that_watch_differently_are_told_apart_in_logs_metrics_readyz_and_status(
    push_env: dict[str, str], tmp_path: Path, receiver: Receiver, postgres_url: str, daemons: Callable[..., Daemon]
) -> None:
    with world("openai") as api, world("cohere") as cohere:
        api.add("job", "running")
        cohere.add("model")
        base = _on_postgres(push_env, postgres_url) | {
            "FTWATCH_POLL__INTERVAL_S": "1",
            "FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}]),
        }
        creds = api.credentials(tmp_path) | cohere.credentials(tmp_path)
        cohere_only = base | creds | {"FTWATCH_SOURCES": json.dumps([cohere.source()])}
        both = base | creds | {"FTWATCH_SOURCES": json.dumps([cohere.source(), api.source()])}
        leader_port, standby_port = free_port(), free_port()
        leader = daemons(cohere_only | {"FTWATCH_HTTP__LISTEN": f"127.0.0.1:{leader_port}"})
        leader.wait_log('"poll.cycle"')
        standby = daemons(both | {"FTWATCH_HTTP__LISTEN": f"127.0.0.1:{standby_port}"})
        standby.wait_log('"replica.config_differs"', timeout=20)
        ready = httpx.get(f"http://127.0.0.1:{standby_port}/readyz").json()
        assert "differs from the leader's" in ready["config"]
        metrics = httpx.get(f"http://127.0.0.1:{standby_port}/metrics").text
        assert "ftwatch_config_differs_from_leader 1.0" in metrics
        status = run_cli(["status", "--json"], both)
        report = json.loads(status.stdout)
        assert report["replicas_agree"] is False
        assert len(report["replicas"]) == 2
        assert "CONFIGURATIONS DIFFER" in run_cli(["status"], both).stdout
        assert standby.stderr.count('"replica.config_differs"') == 1  # once, not every few seconds
        assert standby.stop() == 0
        assert leader.stop() == 0


def test_out_of_descriptors_an_accept_error_is_one_warning_and_the_port_recovers(
    push_env: dict[str, str], tmp_path: Path
) -> None:
    import resource  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    from tests.conftest import FTWATCH  # noqa: PLC0415

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

    with world("openai") as api:
        api.add("job", "running")
        port = free_port()
        env = api.env(push_env, tmp_path, webhook={"secret": SECRET}) | {"FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}"}
        proc = subprocess.Popen(
            [*FTWATCH, "run"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=few_files,  # noqa: PLW1509
        )
        held: list[socket.socket] = []
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # a running daemon: it has polled once
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            for _ in range(200):  # more than the process may open
                with contextlib.suppress(OSError):
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            time.sleep(2.0)
            for conn in held:
                conn.close()
            ok = False
            deadline = time.monotonic() + 30
            while not ok and time.monotonic() < deadline:
                try:
                    ok = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    time.sleep(0.2)
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=20)
        assert ok, f"the port never recovered (exit {proc.returncode}): {stderr[-1500:]}"
        # Once at most (the kernel's backlog may hold a burst without a failed accept),
        # never asyncio's line for every retry.
        assert stderr.count('"http.accept_failed"') <= 1, stderr[-2000:]
        assert "out of system resource" not in stderr
        assert "Traceback" not in stderr
