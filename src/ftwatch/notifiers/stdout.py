"""The stdout notifier: one line per transition, readable or JSON."""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, ClassVar, Literal

from pydantic import model_validator

from ftwatch.linewriter import writer_for
from ftwatch.model import Transition
from ftwatch.notifiers.base import DeliveryFailedError, NotifierConfig, NotifierContext, TemplatedConfig
from ftwatch.wording import text_line

if TYPE_CHECKING:
    from ftwatch.templates import Template

__all__ = ["StdoutConfig", "StdoutNotifier"]


class StdoutConfig(TemplatedConfig):
    format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _template_is_text(self) -> StdoutConfig:
        if self.template is not None and self.format == "json":
            raise ValueError('template words the text format; with format = "json" the line is the webhook body')
        return self


class StdoutNotifier:
    """Prints to standard output, the only thing ftwatch ever prints there."""

    config_model: ClassVar[type[NotifierConfig]] = StdoutConfig
    min_interval_s = 0.0

    def __init__(self, fmt: str, stream: IO[str], template: Template | None = None) -> None:
        self._format = fmt
        self._template = template
        # A thread of its own does the writing: a stalled pipe stalls this notifier's
        # queue, never the daemon (its loop, its other notifiers, /healthz).
        self._writer = writer_for(stream)
        self.identity = f"stdout:{fmt}"
        self.description = "stdout"

    @classmethod
    def from_config(cls, config: StdoutConfig, context: NotifierContext) -> StdoutNotifier:
        return cls(config.format, context.stdout, config.compiled_template())

    async def send(self, transition: Transition) -> None:
        if self._format == "json":
            line = json.dumps(transition.to_payload(), separators=(",", ":"))
        elif self._template is not None:
            line = self._template.render(transition, fallback=text_line(transition))
        else:
            line = text_line(transition)
        try:
            await self._writer.write(line + "\n")
        except OSError as exc:
            raise DeliveryFailedError(f"cannot write to stdout: {exc.strerror or exc}") from None
