"""How long ftwatch takes to start, per command: wall, CPU and peak memory.

    python -m bench.startup [--runs 7]

`--version`, `--help`, `version` and `completion bash` (targets: under 0.05 s), and `run --once` and `watch --once`
on one model against the simulator (target for `run --once`: under 0.4 s wall). Each
command runs as a user runs it, a fresh process every time; the median is printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ftwatch.sim.cohere import DEFAULT_KEY, CohereSimulator, running_in_thread

FTWATCH = [sys.executable, "-m", "ftwatch"]


#: GNU time reports the peak RSS of the command itself (getrusage's children figure
#: would count the pages a forked child shares with this process before its exec).
GNU_TIME = shutil.which("time") if Path("/usr/bin/time").exists() else None


def measure(args: list[str], env: dict[str, str], runs: int) -> tuple[float, float, float]:
    """Median wall seconds, median CPU seconds, and the largest peak RSS (MB; NaN
    without GNU time)."""
    walls, cpus, peak = [], [], float("nan")
    for _ in range(runs):
        with tempfile.NamedTemporaryFile("r") as report:
            prefix = [GNU_TIME, "-f", "%M", "-o", report.name] if GNU_TIME else []
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run([*prefix, *FTWATCH, *args], env=env, capture_output=True, text=True, check=False)
            walls.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-500:]}")
            cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
            if GNU_TIME:
                kilobytes = float(report.read().strip().splitlines()[-1])
                peak = kilobytes / 1024 if peak != peak else max(peak, kilobytes / 1024)  # noqa: PLR0124 - NaN test
    return statistics.median(walls), statistics.median(cpus), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sim = CohereSimulator()
    model = sim.add_model("startup", "STATUS_READY", history=("STATUS_QUEUED",))
    with running_in_thread(sim), tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FTWATCH_", "CO_"))}
        env |= {
            "CO_API_KEY": DEFAULT_KEY,
            "CO_API_URL": sim.url,
            "FTWATCH_STATE__PATH": str(Path(tmp) / "state.db"),
            "FTWATCH_HTTP__LISTEN": "",
            "FTWATCH_POLL__MODELS": f'["{model}"]',
            "FTWATCH_NOTIFIERS": '[{"type": "stdout"}]',
        }
        print(f"{'command':<22} {'wall s':>8} {'cpu s':>8} {'peak MB':>8}   (median of {args.runs})")
        for name, command in [
            ("--version", ["--version"]),
            ("--help", ["--help"]),
            ("version", ["version"]),
            ("completion bash", ["completion", "bash"]),
            ("run --once (1 model)", ["run", "--once"]),
            ("watch --once (1 model)", ["watch", "--once"]),
        ]:
            wall, cpu, peak = measure(command, env, args.runs)
            print(f"{name:<22} {wall:>8.3f} {cpu:>8.3f} {peak:>8.1f}")


if __name__ == "__main__":
    main()
