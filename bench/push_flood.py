"""Flood the push endpoint of a running daemon and print what it cost.

    python -m bench.push_flood [--slow 1000] [--pushes-per-second 200] [--seconds 5]

One OpenAI source (the simulator) takes signed pushes on ``POST /webhooks/openai``.
Three floods, one after the other: big bodies (declared 300 MB, and 200 MB chunked),
``--slow`` connections that send headers and then a byte a second, and valid
signed pushes at ``--pushes-per-second`` for ``--seconds``. Printed: the daemon's
RSS and open descriptors before and after each, its poll cycles and API requests,
and ``/healthz`` latency (median, worst) sampled during each flood (a new
connection each time, as a probe makes, from this process on the same two cores).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from ftwatch.sim import openai as openai_sim
from ftwatch.sim.kit import running_in_thread
from ftwatch.sim.openai import OpenAISimulator
from ftwatch.standard_webhooks import sign

SECRET = "whsec_" + base64.b64encode(b"bench-push-flood-secret-32-bytes").decode()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Probe:
    """/healthz every 100 ms while a flood runs."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # A fresh connection each time (as a kubelet probe makes), no TLS context to build.
        client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), verify=False)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                ok = client.get(self.url, timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            self.latencies.append(time.perf_counter() - started)
            self.failures += not ok
            time.sleep(0.1)

    def __enter__(self) -> _Probe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def text(self) -> str:
        if not self.latencies:
            return "no samples"
        ms = [x * 1000 for x in self.latencies]
        return f"/healthz median {statistics.median(ms):.1f} ms, worst {max(ms):.1f} ms, failed {self.failures}"


def _big_bodies(port: int) -> None:
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /webhooks/openai HTTP/1.1\r\nHost: x\r\nContent-Length: 300000000\r\n\r\n")
            conn.recv(100)

    def chunks() -> Iterator[bytes]:
        for _ in range(200):
            yield b"x" * 1_000_000

    for _ in range(3):
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"http://127.0.0.1:{port}/webhooks/openai", content=chunks(), timeout=30)


def _slow(port: int, count: int) -> Callable[[], None]:
    def run() -> None:
        conns = []
        for _ in range(count):
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                conn.sendall(b"POST /webhooks/openai HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
                conns.append(conn)
            except OSError:
                break
        for _ in range(12):  # a byte a second, for longer than the body timeout
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.sendall(b" ")
            time.sleep(1.0)
        for conn in conns:
            conn.close()

    return run


def _pushes(port: int, job: str, per_second: int, seconds: float) -> Callable[[], None]:
    def run() -> None:
        url = f"http://127.0.0.1:{port}/webhooks/openai"
        with httpx.Client() as client:
            deadline = time.monotonic() + seconds
            n = 0
            while time.monotonic() < deadline:
                started = time.monotonic()
                for _ in range(per_second // 10):
                    n += 1
                    msg = f"evt_{n}"
                    body = json.dumps({"id": msg, "type": "fine_tuning.job.succeeded", "data": {"id": job}}).encode()
                    now = int(time.time())
                    headers = {
                        "webhook-id": msg,
                        "webhook-timestamp": str(now),
                        "webhook-signature": sign(SECRET, msg, now, body),
                    }
                    client.post(url, content=body, headers=headers)
                time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow", type=int, default=1000, help="slow connections held at once")
    parser.add_argument("--pushes-per-second", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the valid pushes go on")
    args = parser.parse_args()
    with running_in_thread(OpenAISimulator()) as sim, tempfile.TemporaryDirectory() as tmp:
        job = sim.add_job("flooded", "running")
        port = _free_port()
        source = {"type": "openai", "base_url": sim.url, "webhook": {"secret": SECRET}}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FTWATCH_", "OPENAI_"))} | {
            "OPENAI_API_KEY": openai_sim.DEFAULT_KEY,
            "FTWATCH_SOURCES": json.dumps([source]),
            "FTWATCH_STATE__PATH": str(Path(tmp) / "state.db"),
            "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
            "FTWATCH_POLL__INTERVAL_S": "30",
            "FTWATCH_NOTIFIERS": json.dumps([{"type": "stdout", "format": "json"}]),
        }
        daemon = subprocess.Popen(
            [sys.executable, "-m", "ftwatch", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(daemon.stderr or []), daemon=True).start()
        try:
            while not any('"poll.cycle"' in line for line in lines):
                time.sleep(0.05)
            floods: list[tuple[str, Callable[[], None]]] = [
                ("big bodies (5 x 300 MB declared, 3 x 200 MB chunked)", lambda: _big_bodies(port)),
                (f"{args.slow} slow connections, 12 s", _slow(port, args.slow)),
                (
                    f"{args.pushes_per_second} valid pushes/s for {args.seconds:g} s",
                    _pushes(port, job, args.pushes_per_second, args.seconds),
                ),
            ]
            print(f"{'flood':<52} {'RSS MB':>15} {'fds':>11} {'cycles':>6} {'API req':>7}  health")
            for name, flood in floods:
                rss, fds = _rss_mb(daemon.pid), _fds(daemon.pid)
                cycles = sim.count("list_models")  # one listing per cycle of the one source
                requests = sim.count()
                with _Probe(port) as probe:
                    flood()
                    time.sleep(2.5)  # the last coalesced cycle
                grown = f"{rss:.0f} -> {_rss_mb(daemon.pid):.0f}"
                fd_text = f"{fds} -> {_fds(daemon.pid)}"
                cycled = sim.count("list_models") - cycles
                print(f"{name:<52} {grown:>15} {fd_text:>11} {cycled:>6} {sim.count() - requests:>7}  {probe.text()}")
        finally:
            daemon.terminate()
            daemon.wait(timeout=20)


if __name__ == "__main__":
    main()
