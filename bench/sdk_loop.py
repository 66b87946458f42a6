"""What a user would otherwise write: Cohere's SDK fetching every model's events.

Run by bench/compare.py as a separate process, like ftwatch; prints one JSON line.
``sync``: a plain loop over cohere.Client. ``async``: cohere.AsyncClient with
asyncio.gather, at most CONCURRENCY requests in flight.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import cohere


def _all_events_sync(client: cohere.Client, model_id: str) -> int:
    count, token = 0, None
    while True:
        page = client.finetuning.list_events(model_id, page_size=100, page_token=token, order_by="created_at")
        count += len(page.events or [])
        token = page.next_page_token
        if not token:
            return count


async def _all_events_async(client: cohere.AsyncClient, model_id: str, gate: asyncio.Semaphore) -> int:
    count, token = 0, None
    while True:
        async with gate:
            page = await client.finetuning.list_events(model_id, page_size=100, page_token=token, order_by="created_at")
        count += len(page.events or [])
        token = page.next_page_token
        if not token:
            return count


def main() -> None:
    mode, base_url, key, concurrency, *models = sys.argv[1:]
    started = time.perf_counter()
    if mode == "sync":
        client = cohere.Client(api_key=key, base_url=base_url)
        events = sum(_all_events_sync(client, model) for model in models)
    else:

        async def run() -> int:
            gate = asyncio.Semaphore(int(concurrency))
            client = cohere.AsyncClient(api_key=key, base_url=base_url)
            counts = await asyncio.gather(*(_all_events_async(client, m, gate) for m in models))
            return sum(counts)

        events = asyncio.run(run())
    print(json.dumps({"poll_s": time.perf_counter() - started, "events": events}))


if __name__ == "__main__":
    main()
