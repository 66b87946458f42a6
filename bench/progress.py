"""What keeping every running job's progress costs: CPU per cycle and the state's
size, with N running jobs whose progress moves every cycle.

    python -m bench.progress --jobs 2000 --cycles 6
    python -m bench.progress --jobs 2000 --cycles 6 --frozen        # nothing moves
    python -m bench.progress --jobs 2000 --provider openai --rpm 20000
    python -m bench.progress --jobs 2000 --src ../before/src         # another build

The simulator runs in this process and moves every job's progress once per
interval (Together tells it in its list: no extra request; OpenAI in each job's
metrics events: one request per running job and cycle, within the budget). ftwatch
runs as the real daemon in a subprocess, on SQLite; its CPU is read from /proc
after the first (baseline) cycle. ``--src`` runs the daemon of another source tree
(an older commit's ``src``) against the same simulator, for a before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.providers import world

from .common import cpu_seconds, log_events, peak_rss_mb


def main() -> None:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--provider", choices=("together", "openai"), default="together")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--cycles", type=int, default=6, help="cycles measured after the baseline")
    parser.add_argument("--rpm", type=int, default=600, help="the source's max_requests_per_minute")
    parser.add_argument("--frozen", action="store_true", help="progress never moves (what no progress costs)")
    parser.add_argument("--src", type=Path, help="run the daemon of this source tree instead")
    parser.add_argument("--profile", type=Path, help="run the daemon under cProfile, its stats written here")
    args = parser.parse_args()

    with world(args.provider, rate_limit_per_minute=10**6) as api, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        running = api.simulated.lifecycle[1]
        jobs = [api.add(f"job-{i:05d}", running) for i in range(args.jobs)]
        total = 10_000  # every cycle a step more, for the whole run
        for job in jobs:
            api.server.train(job, 1, total)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("FTWATCH_", "OPENAI_", "TOGETHER_"))}
        env = api.env(clean, tmp, max_requests_per_minute=args.rpm) | {
            "FTWATCH_STATE__PATH": str(tmp / "state.db"),
            "FTWATCH_HTTP__LISTEN": "",
            "FTWATCH_POLL__INTERVAL_S": str(args.interval),
            "FTWATCH_LOG_LEVEL": "debug",  # every cycle's poll.cycle line
        }
        if args.src is not None:
            env["PYTHONPATH"] = str(args.src.resolve())
        stop = threading.Event()

        def train() -> None:
            step = 1
            while not stop.wait(args.interval):
                step += 1
                for job in jobs:
                    api.server.train(job, step, total)

        log_path = tmp / "ftwatch.log"
        with log_path.open("w") as log_file:
            profile = ["-m", "cProfile", "-o", str(args.profile.resolve())] if args.profile else []
            proc = subprocess.Popen([sys.executable, *profile, "-m", "ftwatch", "run"], env=env, stderr=log_file)

            def cycles() -> list[dict[str, object]]:
                return log_events(log_path.read_text(), "poll.cycle")

            while not cycles():
                if proc.poll() is not None:
                    raise SystemExit(log_path.read_text()[-2000:])
                time.sleep(0.05)
            if not args.frozen:
                threading.Thread(target=train, daemon=True).start()
            cpu_start, seen = cpu_seconds(proc.pid), len(cycles())
            while len(cycles()) < seen + args.cycles:
                time.sleep(0.1)
            cpu = cpu_seconds(proc.pid) - cpu_start
            measured = cycles()[seen : seen + args.cycles]
            rss = peak_rss_mb(proc.pid)
            stop.set()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        db = sqlite3.connect(tmp / "state.db")
        columns = [row[1] for row in db.execute("PRAGMA table_info(models)")]
        progress_bytes = (
            db.execute("SELECT COALESCE(SUM(LENGTH(progress)), 0) FROM models").fetchone()[0]
            if "progress" in columns
            else 0
        )
        db.close()
        size = sum(p.stat().st_size for p in tmp.glob("state.db*"))

    requests = [int(str(c["requests"])) for c in measured]
    print(
        f"{args.jobs} running {args.provider} jobs · interval {args.interval:g} s · "
        f"progress {'frozen' if args.frozen else 'moving every cycle'} · "
        f"daemon from {args.src or 'this tree'}"
    )
    print(f"requests per cycle: {requests}; seconds per cycle: {[c['seconds'] for c in measured]}")
    print(f"CPU per cycle after the baseline: {cpu * 1000 / args.cycles:.0f} ms (mean of {args.cycles})")
    print(f"state: {size / 1024:.0f} KiB on disk, of which progress {progress_bytes / 1024:.0f} KiB")
    print(f"peak RSS {rss:.1f} MB")
    print(json.dumps({"cpu_ms_per_cycle": round(cpu * 1000 / args.cycles), "state_kib": round(size / 1024)}))


if __name__ == "__main__":
    main()
