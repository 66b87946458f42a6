"""Counting database round trips from outside the process: a TCP forwarder that
notes each time a client starts sending after the server has answered.

A round trip is what costs latency: the client sends (one statement, or a whole
pipeline), then waits for the answer. Counting turns of the conversation, not
messages, measures exactly that, needs no server extension (pg_stat_statements is
not loaded here) and no hook in the code under test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit


class RoundTripProxy:
    """127.0.0.1:port → the URL's host:port; ``turns`` holds one wall-clock time per
    round trip started by any client connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        netloc = parts.netloc.rpartition("@")[0] + "@" if "@" in parts.netloc else ""
        self.url = urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{port}"))
        self.turns: list[float] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._target)
                answered = [True]  # per connection: has the server spoken since the client last did?
                threading.Thread(target=self._pipe, args=(client, server, answered, True), daemon=True).start()
                threading.Thread(target=self._pipe, args=(server, client, answered, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, answered: list[bool], from_client: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if from_client:
                    if answered[0]:
                        self.turns.append(time.time())
                    answered[0] = False
                else:
                    answered[0] = True
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def between(self, start: float, end: float) -> int:
        return sum(1 for at in self.turns if start <= at <= end)

    def close(self) -> None:
        self._listener.close()
