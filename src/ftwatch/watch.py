"""``ftwatch watch``: a live table of models in the terminal, or plain lines in a pipe.

The same client, retries, diff and cycle as ``ftwatch run``; the view replaces the
notifiers, and no state file is kept unless ``[state] path`` is set.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
from rich.console import Console
from rich.live import Live

from ftwatch.daemon import api_client, make_source, poller_for
from ftwatch.health import Health
from ftwatch.logs import configure_logging
from ftwatch.notifiers.stdout import text_line
from ftwatch.poller import CycleResult, Poller
from ftwatch.settings import KeySource, Settings, load_settings
from ftwatch.source import SourceError
from ftwatch.store import Store
from ftwatch.view import ModelRow, WatchState, render

__all__ = ["DEFAULT_INTERVAL_S", "run_watch", "watch_models"]

#: A terminal wants news sooner than a daemon's 30 s.
DEFAULT_INTERVAL_S = 5.0


def run_watch(args: argparse.Namespace) -> int:
    settings, _ = load_settings(args.config)
    live = sys.stdout.isatty() and not args.once
    # Log lines would tear the live table: only errors, unless asked for more.
    configure_logging(os.environ.get("FTWATCH_LOG_LEVEL", "error" if live else settings.log_level))
    KeySource(settings.cohere.api_key_file).read()  # a missing key: exit 2 before any drawing
    models = args.model_ids or settings.poll.models
    interval = args.interval or DEFAULT_INTERVAL_S
    anyio.run(lambda: watch_models(settings, models, interval, once=args.once, live=live))
    return 0


def _update(state: WatchState, poller: Poller, result: CycleResult, interval: float) -> None:
    for model_id, info in result.statuses.items():
        row = state.rows.setdefault(model_id, ModelRow(model_id, info.name, info.status))
        row.name = info.name
        row.status = info.status
        known = poller.known(model_id)
        if row.since_ns is None and known is not None:
            row.since_ns = known.cursor.at_ns
    state.apply(result.transitions)
    missing = f" · not found: {', '.join(result.not_found)}" if result.not_found else ""
    failing = ""
    if result.failed:
        ids = sorted(result.failed)
        failing = f" · API error for {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''}: {result.failed[ids[0]]}"
    state.status_line = (
        f"{len(state.rows)} models · polled {time.strftime('%H:%M:%S')} · every {interval:g}s{missing}{failing}"
        " · Ctrl-C quits"
    )
    state.error = bool(result.not_found or result.failed)


async def watch_models(
    settings: Settings,
    models: Sequence[str],
    interval: float,
    *,
    once: bool = False,
    live: bool = False,
    duration_s: float | None = None,
) -> None:
    """Poll and show until Ctrl-C (or ``duration_s``); ``once``: one table, then return."""
    console = Console()
    state = WatchState()
    # A state of its own, in memory, always: the live view must never advance the
    # cursors of the daemon's state file (a cron `run --once` would then miss what
    # the view saw), and it needs no file to start.
    store = Store(Path(":memory:"))
    health = Health(interval)
    try:
        async with api_client(settings) as http:
            poller = poller_for(make_source(http, settings, health=health), store, settings)
            poller.models = list(dict.fromkeys(models))
            if once:
                _update(state, poller, await poller.cycle(), interval)
                console.print(render(state, time.time_ns()))
                return
            async with anyio.create_task_group() as group:
                group.start_soon(_stop_on_signal, group.cancel_scope, duration_s)
                if live:
                    with Live(render(state, time.time_ns()), console=console, auto_refresh=False) as view:
                        group.start_soon(_redraw, view, state, health)
                        await _loop(
                            poller, state, interval, lambda: view.update(render(state, time.time_ns()), refresh=True)
                        )
                else:
                    await _loop(poller, state, interval, None)
    finally:
        store.close()


async def _loop(poller: Poller, state: WatchState, interval: float, redraw: Callable[[], None] | None) -> None:
    while True:
        try:
            result = await poller.cycle()
        except SourceError as exc:
            state.status_line = f"API error: {exc} · retrying every {interval:g}s · Ctrl-C quits"
            state.error = True
        else:
            _update(state, poller, result, interval)
            if redraw is None:
                for transition in result.transitions:
                    print(text_line(transition), flush=True)
        if redraw is not None:
            redraw()
        await anyio.sleep(interval)


async def _redraw(view: Live, state: WatchState, health: Health) -> None:
    # Ages tick, a wait counts down, and a resized terminal is redrawn to its new
    # width within a second.
    while True:
        await anyio.sleep(1.0)
        state.notice = health.describe_wait()
        view.update(render(state, time.time_ns()), refresh=True)


async def _stop_on_signal(scope: anyio.CancelScope, duration_s: float | None) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        if duration_s is None:
            async for _ in signals:
                break
        else:
            with anyio.move_on_after(duration_s):
                async for _ in signals:
                    break
    scope.cancel()
