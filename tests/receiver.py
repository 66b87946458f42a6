"""A real HTTP receiver for webhooks and Slack messages, independent of ftwatch's code.

Built on the standard library's threading server, so a test that passes shows that
ftwatch talks to an ordinary HTTP server, not to something built from its own parts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Receiver:
    """Records every POST; answers from a script of answers, then with ``default``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.attempts: list[Received] = []  # every POST, whatever it was answered
        self.script: list[Answer] = []
        self.default = Answer()
        #: Called (in the server's thread) with each POST before it is answered.
        self.on_post: Callable[[Received], None] | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                item = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                if receiver.on_post is not None:
                    receiver.on_post(item)
                with receiver._lock:
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.attempts.append(item)
                    if 200 <= answer.status < 300:
                        receiver.received.append(item)
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [item.json() for item in self.received]

    def steps(self) -> list[tuple[str | None, str]]:
        """(previous status, status) of each body received, in order."""
        return [(body["previous_status"], body["status"]) for body in self.bodies()]

    def answer(self, *answers: Answer) -> None:
        with self._lock:
            self.script.extend(answers)
