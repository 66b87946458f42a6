"""The status page at ``/``: the board (:mod:`ftwatch.ops.board`) as one HTML page.

Server-rendered, readable without JavaScript and with no script, font or style
from elsewhere (a strict Content-Security-Policy says so to the browser too); it
reloads itself every few seconds. Every string from outside (a model's name, a
status, a failure's reason) goes through Jinja2's autoescape.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import TYPE_CHECKING, Any

from ftwatch import __version__
from ftwatch.model import format_timestamp, human_status
from ftwatch.ops.board import JobRow, StatusBoard
from ftwatch.progress import duration_words
from ftwatch.wording import how_far

if TYPE_CHECKING:
    import jinja2

__all__ = ["CONTENT_SECURITY_POLICY", "REFRESH_S", "render_page"]

#: How often the page reloads itself.
REFRESH_S = 5
#: Nothing from elsewhere, no script at all; the page's own <style> only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)


@functools.cache
def _template() -> jinja2.Template:
    import jinja2  # noqa: PLC0415 - only when the page is asked for

    page = importlib.resources.files("ftwatch.ops").joinpath("status.html").read_text(encoding="utf-8")
    # Autoescape on: every value is HTML-escaped, whatever an API named its model.
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(page)


def _job(row: JobRow, now_ns: int) -> dict[str, Any]:
    progress = row.progress
    ratio = progress.ratio if progress is not None else None
    eta = None
    if progress is not None and progress.eta_ns is not None:
        eta = duration_words(max(0, progress.eta_ns - now_ns) / 1e9)
    return {
        "model_id": row.model_id,
        "name": row.name,
        "provider": row.provider,
        "source": row.source,
        "status": row.status,
        "status_words": human_status(row.status),
        "state": row.state,
        "ratio": ratio,
        "percent": f"{ratio:.0%}" if ratio is not None else "",
        "eta": eta,
        "loss": f"{progress.train_loss:.3f}" if progress is not None and progress.train_loss is not None else None,
        "since": format_timestamp(row.since_ns, digits=0) if row.since_ns is not None else None,
        "age": duration_words(max(0, now_ns - row.since_ns) / 1e9) if row.since_ns is not None else "-",
    }


def render_page(board: StatusBoard, now_ns: int) -> str:
    """The page for what ``board`` holds now."""
    transitions = [
        {
            "when": t.occurred_at[:19].replace("T", " "),
            "name": t.model_name or t.model_id,
            "source": t.source,
            "change": "stalled in " + human_status(t.status)
            if t.stalled
            else f"{human_status(t.previous_status) if t.previous_status else '(new)'} → {human_status(t.status)}",
            "told": t.failure_message or how_far(t),
        }
        for t in board.recent
    ]
    return _template().render(
        refresh=REFRESH_S,
        version=__version__,
        jobs=[_job(row, now_ns) for row in board.jobs()],
        transitions=transitions,
        outbox=list(board.deliveries.items()),
        polled_at=format_timestamp(board.polled_at_ns, digits=0) if board.polled_at_ns else None,
        standby=board.standby,
        error=board.error,
    )
