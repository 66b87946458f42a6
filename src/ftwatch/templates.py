"""Message templates: sandboxed Jinja2, rendered from a transition's fields.

A template is compiled and tried on a sample transition when the configuration is
loaded, so a typo fails ``check-config`` rather than a delivery at 3 a.m.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import structlog
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from ftwatch.model import Transition, human_status

__all__ = ["SAMPLE", "Template", "TemplateText", "compile_template"]

log = structlog.get_logger("ftwatch.templates")

#: What a template is tried on at load time.
SAMPLE = Transition(
    id="ftw_sample",
    model_id="ft-sample",
    model_name="sample-model",
    status="STATUS_READY",
    previous_status="STATUS_DEPLOYING_API",
    occurred_at="2026-01-01T00:00:00.000000000Z",
    user_id=None,
    detected_at="2026-01-01T00:00:01.000Z",
)

#: A message longer than this is cut: nobody reads it, and a header cannot carry it.
MAX_OUTPUT_CHARS = 10_000
#: ``range()`` larger than this is refused (Jinja2's own cap is 100,000 per call).
MAX_RANGE = 1_000
#: A template must render the sample within this at load time, or it is refused.
TRIAL_TIMEOUT_S = 1.0


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, with the arithmetic that makes huge values bounded too."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise ValueError("exponent too large for a template")
        if operator == "*":
            sequence, count = (left, right) if isinstance(left, str | list) else (right, left)
            if isinstance(sequence, str | list) and isinstance(count, int) and len(sequence) * count > MAX_OUTPUT_CHARS:
                raise ValueError("repetition too long for a template")
        return super().call_binop(context, operator, left, right)


#: When the render running in this thread must stop (monotonic seconds).
_deadline = threading.local()


def _bounded_range(*args: int) -> Iterator[int]:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise ValueError(f"range() of more than {MAX_RANGE} items in a template")
    # Checked on every item, so nested loops stop at the deadline instead of running on.
    limit = getattr(_deadline, "at", math.inf)
    for value in values:
        if time.monotonic() > limit:
            raise TimeoutError("template took too long")
        yield value


# Sandboxed: a template from a config file can read the transition, nothing else
# (no attribute escapes to Python internals). Strict: a misspelt field is an error.
# Bounded: loops, repetition and powers are capped, and the load-time trial has a
# deadline, so a template cannot hang check-config or the daemon.
_ENV = _BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_ENV.filters["human"] = human_status
_ENV.globals["range"] = _bounded_range


def _context(transition: Transition) -> dict[str, Any]:
    fields = transition.to_payload()
    fields["status_human"] = human_status(transition.status)
    fields["previous_status_human"] = human_status(transition.previous_status) if transition.previous_status else None
    fields["model"] = transition.model_name or transition.model_id
    return fields


class Template:
    """A compiled template; ``render`` never sees more than the transition."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._template = _ENV.from_string(source)

    def _render(self, transition: Transition, timeout_s: float = TRIAL_TIMEOUT_S) -> str:
        out: list[str] = []
        size = 0
        _deadline.at = time.monotonic() + timeout_s
        try:
            for chunk in self._template.generate(_context(transition)):
                out.append(chunk)
                size += len(chunk)
                if size >= MAX_OUTPUT_CHARS:
                    break
        finally:
            _deadline.at = math.inf
        return "".join(out)[:MAX_OUTPUT_CHARS]

    def render(self, transition: Transition, fallback: str = "") -> str:
        """The rendered text; ``fallback`` if this transition breaks the template
        (a message in default words beats a lost one)."""
        try:
            return self._render(transition)
        except _ERRORS as exc:
            log.warning("template.failed", transition_id=transition.id, error=f"{type(exc).__name__}: {exc}")
            return fallback


_ERRORS = (TemplateError, ArithmeticError, TypeError, ValueError, RecursionError, TimeoutError)


def compile_template(source: str) -> Template:
    """Compile and try a template; :class:`ValueError` with the reason if it is broken
    or takes longer than :data:`TRIAL_TIMEOUT_S` on the sample."""
    outcome: list[BaseException | None] = []
    template: Template | None = None

    def trial() -> None:
        nonlocal template
        try:
            template = Template(source)
            template._render(SAMPLE)
        except _ERRORS as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    # A daemon thread: a template that never ends is abandoned, not waited for.
    thread = threading.Thread(target=trial, name="ftwatch-template-trial", daemon=True)
    thread.start()
    thread.join(TRIAL_TIMEOUT_S)
    if not outcome or isinstance(outcome[0], TimeoutError):
        raise ValueError(f"template takes longer than {TRIAL_TIMEOUT_S:g}s to render a sample: simplify its loops")
    if (exc := outcome[0]) is not None:
        raise ValueError(f"template is broken: {type(exc).__name__}: {exc}") from None
    assert template is not None
    return template


class TemplateText(str):
    """A template's source as configured, with its compiled form beside it: a config
    field holds one, so the template is compiled (and tried) once, at validation."""

    __slots__ = ("compiled",)
    compiled: Template

    @classmethod
    def of(cls, source: str) -> TemplateText:
        text = cls(source)
        text.compiled = compile_template(source)
        return text
