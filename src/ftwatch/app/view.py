"""What ``ftwatch watch`` shows: the models table and the recent transitions.

Pure rendering: a :class:`WatchState` in, rich renderables out. The loop that fills the
state lives in :mod:`ftwatch.app.watch`.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ftwatch.looks import look_of
from ftwatch.model import Progress, Transition, format_timestamp, human_status, parse_timestamp
from ftwatch.textsafe import printable

__all__ = ["ModelRow", "WatchState", "format_age", "progress_text", "render", "sparkline", "status_text"]


def status_text(status: str | None) -> Text:
    look = look_of(status)
    return Text(f"{look.symbol} {printable(human_status(status))}", style=look.colour)


def format_age(seconds: float) -> str:
    """``42s``, ``7m``, ``3h12m``, ``5d``: as kubectl shows ages."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86_400:
        hours, rest = divmod(seconds, 3600)
        return f"{hours}h{rest // 60}m" if rest // 60 else f"{hours}h"
    return f"{seconds // 86_400}d"


_SPARKS = "▁▂▃▄▅▆▇█"
_BAR_WIDTH = 12


def sparkline(values: tuple[float, ...]) -> str:
    """``(2.1, 1.4, 0.9, 0.8)`` -> ``█▄▁▁``: a loss's trend in a few cells."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(_SPARKS[round((v - low) / span * (len(_SPARKS) - 1))] for v in values)


def progress_text(progress: Progress | None, now_ns: int) -> Text:
    """``██████░░░░░░  50%  ETA 12m  █▅▃▂`` (as much of it as the provider tells)."""
    if progress is None:
        return Text("-", style="bright_black")
    text = Text()
    ratio = progress.ratio
    if ratio is not None:
        done = round(ratio * _BAR_WIDTH)
        text.append("█" * done, style="cyan")
        text.append("░" * (_BAR_WIDTH - done), style="bright_black")
        text.append(f" {ratio:4.0%}")
    elif progress.step is not None:
        text.append(f"step {progress.step:,}")
    if progress.eta_ns is not None:
        text.append(f"  ETA {format_age((progress.eta_ns - now_ns) / 1e9)}")
    if spark := sparkline(progress.losses):
        text.append(f"  {spark}", style="magenta")
    if progress.train_loss is not None:
        text.append(f" {progress.train_loss:.3f}")
    return text if text.plain else Text("-", style="bright_black")


@dataclass(slots=True)
class ModelRow:
    model_id: str
    name: str | None
    status: str
    since_ns: int | None = None  # when it entered this status (its newest event)
    last_change: str | None = None  # "finetuning -> ready"
    #: The configured source it came from, and how far it is while running.
    source: str = ""
    progress: Progress | None = None


@dataclass(slots=True)
class WatchState:
    """Everything the view shows; the watch loop updates it."""

    rows: dict[str, ModelRow] = field(default_factory=dict)
    recent: collections.deque[Transition] = field(default_factory=lambda: collections.deque(maxlen=8))
    status_line: str = "starting…"
    error: bool = False
    #: A deliberate wait in progress (the API said Retry-After), shown under the status.
    notice: str = ""
    #: How to quit, for a view that goes on (none for a single table).
    quit_hint: str = " · Ctrl-C quits"

    def apply(self, transitions: list[Transition]) -> None:
        for transition in transitions:
            self.recent.appendleft(transition)
            row = self.rows.setdefault(transition.model_id, ModelRow(transition.model_id, transition.model_name, ""))
            row.status = transition.status
            row.source = row.source or transition.source
            row.since_ns = parse_timestamp(transition.occurred_at)
            row.last_change = f"{human_status(transition.previous_status)} -> {human_status(transition.status)}"


def render(state: WatchState, now_ns: int, *, fit: bool = True) -> RenderableType:
    """``fit``: names cut to fit a terminal; ``False`` (piped): every name whole."""
    table = Table(expand=False, header_style="bold", box=None, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("NAME", no_wrap=True, max_width=40 if fit else None, overflow="ellipsis" if fit else "fold")
    table.add_column("SOURCE", no_wrap=True)
    table.add_column("ID", no_wrap=True, style="bright_black")
    table.add_column("STATUS", no_wrap=True)
    table.add_column("PROGRESS", no_wrap=True)
    table.add_column("FOR", no_wrap=True, justify="right")
    table.add_column("LAST CHANGE", no_wrap=True)
    for row in sorted(state.rows.values(), key=lambda r: ((r.name or "").lower(), r.model_id)):
        age = format_age((now_ns - row.since_ns) / 1e9) if row.since_ns else "-"
        # Text, never str: rich would read "[/x]" or "[link=…]" in a name as markup.
        table.add_row(
            Text(printable(row.name or "-")),
            Text(printable(row.source or "-")),
            Text(printable(row.model_id)),
            status_text(row.status),
            progress_text(row.progress, now_ns),
            age,
            Text(printable(row.last_change or "-")),
        )
    if not state.rows:
        table.add_row(Text("no models yet", style="italic"), "", "", "", "", "", "")

    lines: list[RenderableType] = [table, Text("")]
    if state.recent:
        lines.append(Text("Recent transitions", style="bold"))
        for t in state.recent:
            line = Text(f"{format_timestamp(parse_timestamp(t.occurred_at), 0)[:-1].replace('T', ' ')}  ")
            line.append(f"{printable(t.model_name or t.model_id)}  ")
            line.append_text(status_text(t.previous_status) if t.previous_status else Text("(new)"))
            line.append(" -> ")
            line.append_text(status_text(t.status))
            lines.append(line)
        lines.append(Text(""))
    lines.append(Text(state.status_line, style="bold red" if state.error else "bright_black"))
    if state.notice:
        lines.append(Text(state.notice, style="yellow"))
    return Group(*lines)
