"""Counting database round trips from outside the process: a TCP forwarder that reads
the PostgreSQL protocol the clients send and notes each point where a client waits
for the server.

A client waits after a simple Query ('Q'), after a Sync ('S', which ends a statement
of the extended protocol, or a whole pipeline of them) and after a Flush ('H', which
asks for the results so far inside a pipeline): their number is the number of round
trips, however the bytes happen to be split into packets (a Sync and a Flush sent
together before any answer are one wait, not two). This needs
no server extension (pg_stat_statements is not loaded here) and no hook in the code
under test. The URL it hands out turns TLS off, so that the messages can be read.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Frontend messages after which the client waits for an answer.
_WAITS = frozenset(b"QSH")


class RoundTripProxy:
    """127.0.0.1:port → the URL's host:port; ``waits`` holds one wall-clock time per
    round trip of any client connection (startup excluded)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        user = parts.netloc.rpartition("@")[0] + "@" if "@" in parts.netloc else ""
        query = dict(parse_qsl(parts.query)) | {"sslmode": "disable", "gssencmode": "disable"}
        self.url = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}", query=urlencode(query)))
        self.waits: list[float] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._target)
                for sock in (client, server):  # as libpq does: no Nagle delay added here
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.connections += 1
                # [server answered since the client's last wait, the last message was a wait]
                flags = [True, False]
                threading.Thread(target=self._from_client, args=(client, server, flags), daemon=True).start()
                threading.Thread(target=self._from_server, args=(server, client, flags), daemon=True).start()

    def _from_client(self, client: socket.socket, server: socket.socket, flags: list[bool]) -> None:
        buffer = b""
        started = False  # the startup message has no type byte
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                server.sendall(data)
                buffer += data
                while True:
                    if not started:
                        if len(buffer) < 4:
                            break
                        (length,) = struct.unpack("!I", buffer[:4])
                        if len(buffer) < length:
                            break
                        buffer, started = buffer[length:], True
                        continue
                    if len(buffer) < 5:
                        break
                    kind, (length,) = buffer[0], struct.unpack("!I", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    if kind in _WAITS:
                        if flags[0] or not flags[1]:
                            self.waits.append(time.time())
                        flags[0], flags[1] = False, True
                    else:
                        flags[1] = False
                    buffer = buffer[1 + length :]
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    @staticmethod
    def _from_server(source: socket.socket, sink: socket.socket, flags: list[bool]) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                flags[0] = True
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def count(self) -> int:
        return len(self.waits)

    def between(self, start: float, end: float) -> int:
        return sum(1 for at in self.waits if start <= at <= end)

    def close(self) -> None:
        self._listener.close()
