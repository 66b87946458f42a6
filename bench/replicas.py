"""Several replicas on one PostgreSQL database: failover time and delivery throughput.

    python -m bench.replicas [--url postgresql://postgres@127.0.0.1:5432/test] [--runs 5]

Failover: two replicas; the leader is SIGKILLed; the time until the other one's first
poll cycle as leader (goal: at most lease_s + interval_s), median of --runs.
Throughput: N transitions queued, delivered to a receiver answering in 20 ms, by one
replica and by three (one sender per notifier at a time, by design: order is kept).
Each run uses a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from tests.pg import new_schema
from tests.receiver import Answer, Receiver

from ftwatch.sim.cohere import CohereSimulator, running_in_thread

from .common import base_env

FTWATCH = [sys.executable, "-m", "ftwatch", "run"]


class Replica:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(FTWATCH, env=env, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line))

    def first(self, event: str, after: float = 0.0, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if at >= after and f'"event": "{event}"' in line:
                    return at
            time.sleep(0.01)
        raise SystemExit(f"no {event} within {timeout}s")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        self.proc.wait(30)


@contextmanager
def schema(url: str) -> Iterator[str]:
    name, scoped = new_schema(url, "ftw_bench")
    try:
        yield scoped
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE".encode())


def failover(url: str, sim: CohereSimulator, tmp: Path, lease_s: float, interval_s: float) -> float:
    with schema(url) as scoped:
        env = base_env(sim.url, tmp) | {
            "FTWATCH_STATE__URL": scoped,
            "FTWATCH_STATE__LEASE_S": str(lease_s),
            "FTWATCH_POLL__INTERVAL_S": str(interval_s),
        }
        leader = Replica(env)
        leader.first("leader.acquired")
        standby = Replica(env)
        standby.first("leader.standby")
        time.sleep(interval_s * 2)
        killed = time.monotonic()
        leader.stop(signal.SIGKILL)
        standby.first("leader.acquired", after=killed)
        took = standby.first("poll.cycle", after=killed) - killed
        standby.stop()
        return took


def throughput(url: str, sim: CohereSimulator, tmp: Path, replicas: int, transitions: int) -> float:
    receiver = Receiver().start()
    receiver.default = Answer(200, delay_s=0.02)
    models = [sim.add_model(f"t-{replicas}-{i}", "STATUS_QUEUED") for i in range(transitions)]
    try:
        with schema(url) as scoped:
            env = base_env(sim.url, tmp) | {
                "FTWATCH_STATE__URL": scoped,
                "FTWATCH_POLL__INTERVAL_S": "0.5",
                # Delivery is measured, not the API budget: let the poll read them all at once.
                "FTWATCH_COHERE__MAX_REQUESTS_PER_MINUTE": "100000",
                "FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}]),
            }
            running = [Replica(env)]
            running[0].first("leader.acquired")
            running += [Replica(env) for _ in range(replicas - 1)]
            for replica in running[1:]:
                replica.first("leader.standby")
            for model in models:
                sim.set_status(model, "STATUS_READY")
            deadline = time.monotonic() + 300
            while len(receiver.received) < transitions and time.monotonic() < deadline:
                time.sleep(0.01)
            # From the first delivery to the last: the dispatchers' pace, not the poll's.
            took = receiver.received[-1].at - receiver.received[0].at
            ids = [r.headers.get("webhook-id") or r.json()["id"] for r in receiver.received]
            if len(set(ids)) != len(ids):
                print(f"  ({len(ids) - len(set(ids))} duplicates!)")
            for replica in running:
                replica.stop()
            return (len(receiver.received) - 1) / took
    finally:
        receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--transitions", type=int, default=200)
    args = parser.parse_args()
    sim = CohereSimulator(rate_limit_per_minute=1_000_000)
    sim.add_model("m", "STATUS_READY")
    with running_in_thread(sim), tempfile.TemporaryDirectory() as tmp:
        times = [failover(args.url, sim, Path(tmp), args.lease, args.interval) for _ in range(args.runs)]
        goal = args.lease + args.interval
        print(
            f"failover (lease {args.lease:g}s, interval {args.interval:g}s): median {statistics.median(times):.2f}s,"
            f" max {max(times):.2f}s over {args.runs} runs (goal <= {goal:g}s)"
        )
        for count in (1, 3):
            rate = throughput(args.url, sim, Path(tmp), count, args.transitions)
            print(f"delivery, {count} replica(s), receiver 20 ms: {rate:.1f} transitions/s ({args.transitions} sent)")


if __name__ == "__main__":
    main()
