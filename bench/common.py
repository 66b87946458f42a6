"""Shared by the benchmarks: a seeded simulator, process figures, percentiles."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ftwatch.sim.cohere import CohereSimulator

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def seeded_simulator(
    models: int, *, latency_s: float, page_size: int, rate_limit: int, history: int = 4
) -> CohereSimulator:
    sim = CohereSimulator(max_page_size=page_size, rate_limit_per_minute=rate_limit, latency_s=latency_s)
    statuses = ("STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_READY")
    for i in range(models):
        sim.add_model(f"model-{i:05d}", statuses[history - 1], history=statuses[: history - 1])
    return sim


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def log_events(stderr: str, event: str) -> list[dict[str, Any]]:
    """ftwatch's JSON log lines of one event name."""
    marker = f'"event": "{event}"'
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{") and marker in line]


def base_env(sim_url: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FTWATCH_", "CO_", "COHERE_"))}
    env.update(
        {
            "CO_API_KEY": "sim-key",
            "CO_API_URL": sim_url,
            "FTWATCH_STATE__PATH": str(tmp / "state.db"),
            "FTWATCH_HTTP__LISTEN": "",
        }
    )
    return env
