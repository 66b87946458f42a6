"""Logging: structlog to stderr, JSON lines for machines, colours for people.

The standard library's loggers (httpx, hypercorn) go through the same renderer, so
every line on stderr has one shape.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import Any

import structlog

from ftwatch.linewriter import LineWriter, writer_for
from ftwatch.textsafe import printable

__all__ = ["configure_logging", "flush_logs", "set_log_level"]

#: Log lines that may wait for a stalled stderr; past this they are dropped (and
#: counted), so a stuck log reader costs bounded memory and never the loop.
MAX_QUEUED_LINES = 10_000


class _ThreadedHandler(logging.Handler):
    """Formats in the caller's thread (cheap), writes in the writer's (may block)."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
            return
        self.writer.put_nowait(line + "\n")


_handler: _ThreadedHandler | None = None


def flush_logs(timeout_s: float = 2.0) -> None:
    """Let queued log lines out (bounded: a stalled stderr cannot hold the exit)."""
    if _handler is not None:
        _handler.writer.flush(timeout_s)


atexit.register(flush_logs)

_CHATTY = ("httpx", "httpcore", "hypercorn.error", "hypercorn.access")
#: Libraries whose chatter ftwatch says in its own events (a retry: poll.failed once
#: per streak; botocore's "Found credentials in environment variables"): shown at
#: debug only.
_DEBUG_ONLY = ("stamina", "botocore")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def escape_for_terminal(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """On a terminal, text from outside (a model's name, an API's error) is shown with
    its controls escaped: a log line can never repaint the screen. JSON lines need
    nothing: their encoder escapes every control already."""
    return {key: printable(value) if isinstance(value, str) else value for key, value in event_dict.items()}


def _colors() -> bool:
    """no-color.org and force-color.org: NO_COLOR wins, as the live view's rich does."""
    return not os.environ.get("NO_COLOR")


def configure_logging(level: str = "info", *, json_lines: bool | None = None) -> None:
    """Send every log line to stderr at ``level`` and above.

    ``json_lines`` defaults to "stderr is not a terminal".
    """
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    if json_lines is None:
        # FORCE_COLOR: coloured lines for a person even through a pipe (force-color.org).
        json_lines = not sys.stderr.isatty() and not os.environ.get("FORCE_COLOR")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=_colors(), exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if json_lines else [escape_for_terminal]),
            renderer,
        ],
    )
    global _handler  # noqa: PLW0603 - one handler per process, replaced on reconfiguration
    handler = _ThreadedHandler(writer_for(sys.stderr, max_queued=MAX_QUEUED_LINES))
    handler.setFormatter(formatter)
    _handler = handler
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # httpx logs every request's full URL at INFO, and a Slack webhook URL is a
    # secret: its warnings and errors still come through, its request lines never.
    # ftwatch logs its own requests (api.request_failed, notify.*) without URLs.
    _quiet_libraries(numeric)


def _quiet_libraries(numeric: int) -> None:
    for chatty in _CHATTY:
        logging.getLogger(chatty).setLevel(max(numeric, logging.WARNING))
    for library in _DEBUG_ONLY:
        logging.getLogger(library).setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.ERROR)
    # The pool reports each failed reconnection itself; ftwatch says it once (store.*).
    logging.getLogger("psycopg.pool").setLevel(max(numeric, logging.ERROR))


def set_log_level(level: str) -> None:
    """Change the level of a running process (a reload)."""
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    logging.getLogger().setLevel(numeric)
    _quiet_libraries(numeric)
