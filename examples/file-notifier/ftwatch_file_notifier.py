"""An example third-party notifier: appends each transition to a file as JSON lines.

Install it next to ftwatch (``pip install ./examples/file-notifier``) and configure::

    [[notifiers]]
    type = "file"
    path = "/var/log/ftwatch/transitions.jsonl"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import anyio

from ftwatch import DeliveryFailedError, NotifierConfig, NotifierContext, Transition


class FileConfig(NotifierConfig):
    path: Path


class FileNotifier:
    config_model: ClassVar[type[NotifierConfig]] = FileConfig
    min_interval_s = 0.0

    def __init__(self, path: Path) -> None:
        self._path = path
        self.identity = f"file:{path}"
        self.description = f"file {path}"

    @classmethod
    def from_config(cls, config: FileConfig, context: NotifierContext) -> FileNotifier:
        return cls(config.path)

    async def send(self, transition: Transition) -> None:
        line = json.dumps(transition.to_payload()) + "\n"
        try:
            # File I/O blocks: keep it off the event loop.
            await anyio.to_thread.run_sync(self._append, line)
        except OSError as exc:
            raise DeliveryFailedError(f"cannot write {self._path}: {exc.strerror}") from None

    def _append(self, line: str) -> None:
        with self._path.open("a", encoding="utf-8") as file:
            file.write(line)
