"""ftwatch run --once against what a user would otherwise write, on one simulator.

    python -m bench.compare [--models 300] [--latency-ms 20] [--concurrency 8]

Contenders, each a separate process polling the same simulated API:
- the cohere SDK in a synchronous loop, every model's events;
- cohere.AsyncClient with asyncio.gather at the same concurrency as ftwatch;
- ftwatch run --once, fresh and with state, in its default (auto) mode;
- ftwatch run --once with poll.mode = "events": every model's events, like the SDK.

ftwatch's request budget is lifted for the comparison (the SDK has none). "poll s" is
the time spent polling as measured inside each process; "process s" adds start-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ftwatch.sim.cohere import running_in_thread

from .common import ROOT, base_env, log_events, seeded_simulator


def _ftwatch_once(env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ftwatch", "run", "--once"], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - started
    [cycle] = log_events(done.stderr, "poll.cycle")
    return float(cycle["seconds"]), wall


def _sdk(mode: str, url: str, models: list[str], concurrency: int) -> tuple[float, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sdk_loop.py"), mode, url, "sim-key", str(concurrency), *models],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    return float(json.loads(done.stdout)["poll_s"]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()

    sim = seeded_simulator(args.models, latency_s=args.latency_ms / 1000, page_size=args.page_size, rate_limit=10**9)
    rows: list[tuple[str, int, float, float]] = []
    with running_in_thread(sim), tempfile.TemporaryDirectory() as tmp_dir:
        models = [f"ft-{i:06d}" for i in range(1, args.models + 1)]

        def measure(name: str, run: object) -> None:
            before = sim.count()
            poll_s, wall = run()  # type: ignore[operator]
            rows.append((name, sim.count() - before, poll_s, wall))

        measure("cohere SDK, sync loop", lambda: _sdk("sync", sim.url, models, args.concurrency))
        measure("cohere.AsyncClient + gather", lambda: _sdk("async", sim.url, models, args.concurrency))
        for mode in ("auto", "events"):
            tmp = Path(tmp_dir) / mode
            tmp.mkdir()
            env = {
                **base_env(sim.url, tmp),
                "FTWATCH_POLL__MODELS": json.dumps(models),
                "FTWATCH_POLL__MODE": mode,
                "FTWATCH_POLL__CONCURRENCY": str(args.concurrency),
                "FTWATCH_COHERE__MAX_REQUESTS_PER_MINUTE": "1000000",
                "FTWATCH_LOG_LEVEL": "info",
            }
            measure(f"ftwatch run --once, {mode}, first run", lambda env=env: _ftwatch_once(env))
            measure(f"ftwatch run --once, {mode}, with state", lambda env=env: _ftwatch_once(env))

    sdk_sync, sdk_async = rows[0][2], rows[1][2]
    print(f"{args.models} models, {args.latency_ms:g} ms simulated latency, concurrency {args.concurrency}")
    print(f"{'contender':<40} {'requests':>8} {'poll s':>8} {'process s':>10} {'vs async':>9} {'vs sync':>8}")
    for name, requests, poll_s, wall in rows:
        ratios = f"{poll_s / sdk_async:>8.2f}x {poll_s / sdk_sync:>7.3f}x"
        print(f"{name:<40} {requests:>8} {poll_s:>8.3f} {wall:>10.3f} {ratios}")


if __name__ == "__main__":
    main()
