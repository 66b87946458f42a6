"""ftwatch run against N simulated models: requests, cycle time, detection latency,
CPU per request, peak memory.

    python -m bench.scale --models 2000 --interval 30 --steady-cycles 3 --changes 20
    python -m bench.scale --models 10000 --rpm 250 --interval 30 --changes 40
    python -m bench.scale --models 2000 --state-url postgresql://postgres@127.0.0.1:5432/test

The simulator runs in this process with its own per-key rate limit (--sim-rpm, 500 as
Cohere's); ftwatch runs as the real daemon in a subprocess, delivering to a local
webhook receiver. Phase one changes nothing (requests per steady cycle); phase two
changes one random model every --change-every seconds and times each change from the
simulator to the receiver. With --state-url the daemon reaches PostgreSQL through a
forwarder that counts round trips (bench/roundtrips.py): per cycle, and per interval
(the cycle plus the dispatcher's and the leadership's queries between cycles).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from tests.receiver import Receiver

from ftwatch.sim.cohere import running_in_thread

from .common import base_env, cpu_seconds, log_events, peak_rss_mb, percentile, seeded_simulator
from .roundtrips import RoundTripProxy


def bare_httpx_cpu_ms(url: str, n: int = 100) -> float:
    """CPU of one bare httpx GET in this thread: the floor any Python client stands on."""
    with httpx.Client() as http:
        http.get(url + "/v1/finetuning/finetuned-models", params={"page_size": 1})
        started = time.thread_time()
        for _ in range(n):
            http.get(url + "/v1/finetuning/finetuned-models", params={"page_size": 1}, headers={"authorization": "x"})
        return (time.thread_time() - started) * 1000 / n


def main() -> None:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--page-size", type=int, default=100, help="the simulator's cap on page size")
    parser.add_argument("--rpm", type=int, default=250, help="ftwatch's cohere.max_requests_per_minute")
    parser.add_argument("--sim-rpm", type=int, default=500, help="the simulator's own limit per key")
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--steady-cycles", type=int, default=3)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--change-every", type=float, default=3.0)
    parser.add_argument("--state-url", help="state on PostgreSQL (a schema of its own) instead of SQLite")
    args = parser.parse_args()

    sim = seeded_simulator(
        args.models, latency_s=args.latency_ms / 1000, page_size=args.page_size, rate_limit=args.sim_rpm
    )
    receiver = Receiver().start()
    proxy: RoundTripProxy | None = None
    with running_in_thread(sim), tempfile.TemporaryDirectory() as tmp_dir, contextlib.ExitStack() as stack:
        tmp = Path(tmp_dir)
        env = {
            **base_env(sim.url, tmp),
            "FTWATCH_POLL__INTERVAL_S": str(args.interval),
            "FTWATCH_COHERE__MAX_REQUESTS_PER_MINUTE": str(args.rpm),
            "FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}]),
            # A cycle that finds nothing logs its poll.cycle line at debug, and the
            # bench reads every cycle's line (few others are at debug).
            "FTWATCH_LOG_LEVEL": "debug",
        }
        if args.state_url:
            from .replicas import schema  # noqa: PLC0415 - psycopg only when asked

            proxy = RoundTripProxy(stack.enter_context(schema(args.state_url)))
            stack.callback(proxy.close)
            env["FTWATCH_STATE__URL"] = proxy.url
        log_path = tmp / "ftwatch.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "ftwatch", "run"], env=env, stderr=log_file)

            def cycles() -> list[dict[str, object]]:
                return log_events(log_path.read_text(), "poll.cycle")

            started = time.monotonic()
            while len(cycles()) < 1:
                time.sleep(0.05)
            # CPU from here on: start-up and imports are not per-request costs.
            cpu_start, requests_start = cpu_seconds(proc.pid), sim.count()
            while len(cycles()) < 1 + args.steady_cycles:
                time.sleep(0.2)
            steady = cycles()[1 : 1 + args.steady_cycles]
            baseline = cycles()[0]

            changed_at: dict[tuple[str, str], float] = {}
            rng = random.Random(7)
            statuses = ("STATUS_PAUSED", "STATUS_READY")
            for n in range(args.changes):
                model = f"ft-{rng.randrange(1, args.models + 1):06d}"
                status = statuses[n % 2] if sim.model(model).status != statuses[n % 2] else statuses[(n + 1) % 2]
                sim.set_status(model, status)
                changed_at[(model, status)] = time.time()
                time.sleep(args.change_every)
            deadline = time.monotonic() + 4 * args.interval + 120
            while len(receiver.received) < args.changes and time.monotonic() < deadline:
                time.sleep(0.2)
            cpu = cpu_seconds(proc.pid) - cpu_start
            all_cycles = cycles()
            requests_measured = sim.count() - requests_start
            rss = peak_rss_mb(proc.pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        elapsed = time.monotonic() - started
        floor_ms = bare_httpx_cpu_ms(sim.url)

    latencies = []
    arrival_base = time.time() - time.monotonic()
    for item in receiver.received:
        body = item.json()
        sent = changed_at.get((body["model_id"], body["status"]))
        if sent is not None:
            latencies.append(item.at + arrival_base - sent)
    receiver.stop()
    requests = sim.count()
    pages = math.ceil(args.models / args.page_size)
    steady_requests = [int(str(c["requests"])) for c in steady]
    print(
        f"{args.models} models · page size {args.page_size} · {args.latency_ms:g} ms latency · "
        f"interval {args.interval:g}s · budget {args.rpm}/min · simulator limit {args.sim_rpm}/min · "
        f"state {'PostgreSQL' if args.state_url else 'SQLite'}"
    )
    print(f"baseline cycle: {baseline['requests']} requests, {baseline['seconds']} s")
    print(
        f"steady cycles (no change): requests {steady_requests} = "
        f"{max(steady_requests) / pages:.2f} x ceil(N/page size) ({pages}); "
        f"seconds {[c['seconds'] for c in steady]}"
    )
    print(
        f"detection latency over {len(latencies)}/{args.changes} changes: "
        f"p50 {percentile(latencies, 50):.1f} s, p99 {percentile(latencies, 99):.1f} s, "
        f"max {max(latencies, default=math.nan):.1f} s"
    )
    print(f"429 answers from the simulator: {sim.count(code=429)}")
    print(
        f"requests: {requests} in {elapsed:.0f} s; after the first cycle ftwatch used {cpu * 1000:.0f} ms CPU "
        f"for {requests_measured} requests and {len(receiver.received)} deliveries: "
        f"{cpu * 1000 / max(requests_measured, 1):.2f} ms per request "
        f"(a bare httpx GET costs {floor_ms:.2f} ms CPU on this machine)"
    )
    print(f"ftwatch peak RSS: {rss:.1f} MB")
    cpu_per_cycle = cpu * 1000 / max(len(all_cycles) - 1, 1)
    print(f"CPU per cycle after the baseline: {cpu_per_cycle:.0f} ms (mean over {len(all_cycles) - 1} cycles)")
    if proxy is not None:
        print_round_trips(proxy, all_cycles)


def print_round_trips(proxy: RoundTripProxy, cycles: list[dict[str, object]]) -> None:
    """Round trips inside each cycle, and over the whole interval before it."""
    ends = [datetime.fromisoformat(str(c["timestamp"])).timestamp() for c in cycles]
    inside: dict[int, list[int]] = {}
    interval: dict[int, list[int]] = {}
    for n in range(1, len(cycles)):
        changed = int(str(cycles[n]["transitions"]))
        start = ends[n] - float(str(cycles[n]["seconds"])) - 0.01
        inside.setdefault(changed, []).append(proxy.between(start, ends[n]))
        interval.setdefault(changed, []).append(proxy.between(ends[n - 1] + 1e-6, ends[n]))
    for changed in sorted(inside):
        print(
            f"database round trips, cycles with {changed} transition(s): inside the cycle {inside[changed]},"
            f" whole interval {interval[changed]}"
        )


if __name__ == "__main__":
    main()
