"""``ftwatch watch``: a live table of models in the terminal, or plain lines in a pipe.

The same client, retries, diff and cycle as ``ftwatch run``; the view replaces the
notifiers, and no state file is kept unless ``[state] path`` is set.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

import anyio
from rich.console import Console
from rich.live import Live

from ftwatch.app import wiring
from ftwatch.app.loop import PollLoop
from ftwatch.app.signals import handle_signals
from ftwatch.app.view import ModelRow, WatchState, render
from ftwatch.cycle import CycleFindings, CycleReport, Failed, Polled
from ftwatch.errors import FtwatchError
from ftwatch.ops.health import Health
from ftwatch.ops.logs import configure_logging
from ftwatch.pollers import PollerGroup
from ftwatch.settings import Settings, load_settings
from ftwatch.wording import plural, text_line

__all__ = ["DEFAULT_INTERVAL_S", "run_watch", "watch_models"]

#: A terminal wants news sooner than a daemon's 30 s.
DEFAULT_INTERVAL_S = 5.0


def run_watch(args: argparse.Namespace) -> int:
    settings, _ = load_settings(args.config)
    live = sys.stdout.isatty() and not args.once
    # Log lines would tear the live table: only errors, unless asked for more.
    configure_logging(os.environ.get("FTWATCH_LOG_LEVEL", "error" if live else settings.log_level))
    wiring.check_credentials(settings)  # a missing key: exit 2 before any drawing
    models = args.model_ids or (settings.poll.models if not settings.sources else [])
    interval = args.interval or DEFAULT_INTERVAL_S
    anyio.run(lambda: watch_models(settings, models, interval, once=args.once, live=live))
    return 0


def _update(state: WatchState, poller: PollerGroup, result: CycleFindings, interval: float) -> None:
    running = {model_id: told for jobs in result.progress.values() for model_id, told in jobs.items()}
    for model_id, info in result.statuses.items():
        row = state.rows.setdefault(model_id, ModelRow(model_id, info.name, info.status))
        row.name = info.name
        row.status = info.status
        row.source = result.origin.get(model_id, row.source)
        row.progress = running.get(model_id)
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
        f"{plural(len(state.rows), 'model')} · polled {time.strftime('%H:%M:%S')} · every {interval:g}s"
        f"{missing}{failing}{state.quit_hint}"
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
    """Poll and show until Ctrl-C (or ``duration_s``); ``once``: one table, then return.

    The same wiring and poll loop as ``run``; the subscriber is the view instead of
    notifiers, and the state is in memory: the live view never advances the cursors of
    the daemon's state file, whatever ``[state] path`` says.
    """
    # Piped or redirected, nothing is cut to a terminal's width: a script reads it all.
    fit = sys.stdout.isatty()
    console = Console() if fit else Console(width=100_000, soft_wrap=True)
    state = WatchState()
    store = wiring.memory_store()
    health = Health(interval)
    try:
        async with wiring.api_client(settings) as http:
            poller = wiring.build_poller_group(
                settings,
                wiring.ApiAccess(http, on_request=[health.request_done], on_wait=[health.api_wait]),
                store,
                wiring.Role(models=list(dict.fromkeys(models)) if models else None),
            )
            redraw: list[Callable[[], None]] = []
            state.quit_hint = "" if once else " · Ctrl-C quits"

            def show(report: CycleReport) -> None:
                _show(state, poller, report, interval, print_lines=live is False and not once)
                for draw in redraw:
                    draw()

            loop = PollLoop(poller, interval_s=interval, health=health, subscribers=[show])
            if once:
                report = await loop.cycle()
                if isinstance(report, Failed):
                    raise FtwatchError(f"the API could not be polled: {report.error}")
                console.print(render(state, time.time_ns(), fit=fit))
                return
            await _run_until_stopped(loop, state, console, live=live, redraw=redraw, duration_s=duration_s)
    finally:
        store.close()


async def _run_until_stopped(
    loop: PollLoop,
    state: WatchState,
    console: Console,
    *,
    live: bool,
    redraw: list[Callable[[], None]],
    duration_s: float | None,
) -> None:
    """The loop until Ctrl-C or ``duration_s``, redrawn live in a terminal."""
    async with anyio.create_task_group() as group:

        async def stop() -> None:
            group.cancel_scope.cancel()

        await group.start(handle_signals, stop)
        if duration_s is not None:
            group.start_soon(_stop_after, duration_s, group.cancel_scope)
        if live:
            with Live(render(state, time.time_ns()), console=console, auto_refresh=False) as view:
                redraw.append(lambda: view.update(render(state, time.time_ns()), refresh=True))
                group.start_soon(_redraw, view, state, loop.health)
                await loop.run()
        else:
            await loop.run()


def _show(state: WatchState, poller: PollerGroup, report: CycleReport, interval: float, *, print_lines: bool) -> None:
    if isinstance(report, Failed):
        state.status_line = f"API error: {report.error} · retrying every {interval:g}s{state.quit_hint}"
        state.error = True
        return
    if not isinstance(report, Polled):
        return  # a live view leads no replicas: never a standby
    _update(state, poller, report.findings, interval)
    if print_lines:
        for transition in report.findings.transitions:
            print(text_line(transition), flush=True)


async def _redraw(view: Live, state: WatchState, health: Health) -> None:
    # Ages tick, a wait counts down, and a resized terminal is redrawn to its new
    # width within a second.
    while True:
        await anyio.sleep(1.0)
        state.notice = health.describe_wait()
        view.update(render(state, time.time_ns()), refresh=True)


async def _stop_after(seconds: float, scope: anyio.CancelScope) -> None:
    await anyio.sleep(seconds)
    scope.cancel()
