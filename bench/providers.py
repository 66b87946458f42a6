"""Requests per poll cycle for each provider at N jobs, against its simulator.

    python -m bench.providers --jobs 2000 --cycles 3

For each provider (Cohere, OpenAI, Bedrock): the simulator with N jobs, and the
poller ftwatch runs (built by the same wiring, on a state in memory). It prints the
requests of the baseline cycle, of a steady cycle (nothing changed), and of a cycle
in which --changes jobs moved, next to the list pages one full listing takes; the
goal is a steady cycle of at most 1.1 x the list pages. CPU per steady cycle is this
process's (the simulator runs in a thread of it too, so it is an upper bound).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from tests.providers import LIFECYCLES, PROVIDERS, World, world

from ftwatch.app import wiring
from ftwatch.settings import Settings


def _seed(api: World, jobs: int) -> list[str]:
    first = LIFECYCLES[api.provider][0]
    return [api.add(f"job-{i}", first) for i in range(jobs)]


async def _measure(api: World, settings: Settings, jobs: list[str], cycles: int, changes: int) -> dict[str, Any]:
    store = wiring.memory_store()
    figures: dict[str, Any] = {"provider": api.provider, "jobs": len(jobs)}
    try:
        async with wiring.api_client(settings) as http:
            group = wiring.build_poller_group(settings, wiring.ApiAccess(http), store)

            async def one() -> tuple[int, float, int]:
                before, cpu = api.server.count(), time.process_time()
                result = await group.cycle()
                return api.server.count() - before, time.process_time() - cpu, len(result.transitions)

            figures["baseline_requests"], _, _ = await one()
            steady = [await one() for _ in range(cycles)]
            figures["steady_requests"] = [r for r, _, _ in steady]
            figures["steady_cpu_ms"] = round(1000 * min(c for _, c, _ in steady), 1)
            poller = group.pollers[0]
            figures["list_pages"] = poller.reader.list_cost
            for job in random.sample(jobs, changes):
                api.move(job, LIFECYCLES[api.provider][1])
            figures["changed_requests"], _, figures["changed_transitions"] = await one()
    finally:
        store.close()
    pages = figures["list_pages"] or 1
    figures["steady_per_page"] = round(max(figures["steady_requests"]) / pages, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for provider in args.providers.split(","):
            with contextlib.ExitStack() as stack:
                api = stack.enter_context(world(provider, rate_limit_per_minute=1_000_000))
                os.environ.update(api.credentials(Path(tmp)))  # the simulator's keys, as a user sets theirs
                jobs = _seed(api, args.jobs)
                source = api.source(max_requests_per_minute=1_000_000)
                settings = Settings.model_validate({"sources": [source], "http": {"listen": ""}})
                rows.append(anyio.run(_measure, api, settings, jobs, args.cycles, args.changes))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'provider':<9} {'jobs':>5} {'pages':>5} {'baseline':>8} {'steady':>10} {'x pages':>7} "
        f"{'cpu ms':>7} {'changed':>7} {'transitions':>11}"
    )
    for r in rows:
        steady = "/".join(str(n) for n in r["steady_requests"])
        print(
            f"{r['provider']:<9} {r['jobs']:>5} {r['list_pages']:>5} {r['baseline_requests']:>8} {steady:>10} "
            f"{r['steady_per_page']:>7} {r['steady_cpu_ms']:>7} {r['changed_requests']:>7}"
            f" {r['changed_transitions']:>11}"
        )


if __name__ == "__main__":
    main()
