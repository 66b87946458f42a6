"""Writing to stdout and stderr without ever blocking the event loop.

A pipe whose reader stalls (``ftwatch run | slow-consumer``, a full journald socket)
blocks ``write`` until it drains. Here each stream has one daemon thread of its own
that does the blocking write, straight to the file descriptor: a stall holds that
thread only, never the loop, and never the process's exit (no Python buffer lock is
held, so interpreter shutdown cannot deadlock on it).
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import threading
from collections.abc import Callable
from typing import IO

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = ["LineWriter", "writer_for"]

_Done = Callable[[BaseException | None], None]


def _ignore(error: BaseException | None) -> None:
    pass


class LineWriter:
    """One daemon thread writing whole texts, in order, to one stream.

    ``max_queued``: texts that may wait; past it, :meth:`put_nowait` drops (and
    counts) instead of growing without bound while the reader is stalled.
    """

    def __init__(self, stream: IO[str], *, max_queued: int = 0) -> None:
        self._stream = stream
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None  # an in-memory stream: written through its own methods
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._queue: queue.Queue[tuple[str, _Done]] = queue.Queue(max_queued)
        self._started = False
        self._start_lock = threading.Lock()
        self.dropped = 0

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if not self._started:
                if self._fd is not None:
                    self._stream.flush()  # whatever the text layer holds goes first
                threading.Thread(target=self._run, name="ftwatch-writer", daemon=True).start()
                self._started = True

    def _write(self, text: str) -> None:
        if self._fd is None:
            self._stream.write(text)
            self._stream.flush()
            return
        view = memoryview(text.encode(self._encoding, errors="replace"))
        while view:
            view = view[os.write(self._fd, view) :]

    def _run(self) -> None:
        while True:
            text, done = self._queue.get()
            error: BaseException | None = None
            try:
                if text:
                    self._write(text)
            except (OSError, ValueError) as exc:
                error = exc
            done(error)

    def put_nowait(self, text: str) -> bool:
        """Queue ``text`` and return at once; False (and counted) if the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait((text, _ignore))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    async def write(self, text: str) -> None:
        """Write ``text`` and wait, without blocking the loop, until it is written.
        Raises :class:`OSError` if the write failed (a closed pipe)."""
        self._ensure_thread()
        token = anyio.lowlevel.current_token()
        finished = anyio.Event()
        outcome: list[BaseException | None] = []

        def done(error: BaseException | None) -> None:
            outcome.append(error)
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                anyio.from_thread.run_sync(finished.set, token=token)

        try:
            self._queue.put_nowait((text, done))
        except queue.Full:
            # A bounded writer (the logs') that is full: wait for room off the loop.
            await anyio.to_thread.run_sync(self._queue.put, (text, done))
        await finished.wait()
        if outcome and outcome[0] is not None:
            raise outcome[0]

    def flush(self, timeout_s: float) -> bool:
        """From a plain thread: wait up to ``timeout_s`` for what is queued. True if done."""
        if not self._started:
            return True
        written = threading.Event()
        try:
            self._queue.put(("", lambda _error: written.set()), timeout=timeout_s)
        except queue.Full:
            return False
        return written.wait(timeout_s)


_WRITERS: dict[int, LineWriter] = {}
_WRITERS_LOCK = threading.Lock()


def writer_for(stream: IO[str], *, max_queued: int = 0) -> LineWriter:
    """The one writer of a stream (by its descriptor), so two notifiers printing to
    stdout never interleave their lines."""
    try:
        key = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return LineWriter(stream, max_queued=max_queued)
    with _WRITERS_LOCK:
        if key not in _WRITERS:
            _WRITERS[key] = LineWriter(stream, max_queued=max_queued)
        return _WRITERS[key]
