"""Message templates: sandboxed Jinja2, rendered from a transition's fields.

A template is compiled and tried on a sample transition when the configuration is
loaded, so a typo fails ``check-config`` rather than a delivery at 3 a.m.
"""

from __future__ import annotations

from typing import Any

import structlog
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from ftwatch.model import Transition, human_status

__all__ = ["SAMPLE", "Template", "compile_template"]

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

# Sandboxed: a template from a config file can read the transition, nothing else
# (no attribute escapes to Python internals). Strict: a misspelt field is an error.
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_ENV.filters["human"] = human_status


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

    def render(self, transition: Transition, fallback: str = "") -> str:
        """The rendered text; ``fallback`` if this transition breaks the template
        (a message in default words beats a lost one)."""
        try:
            return self._template.render(_context(transition))
        except (TemplateError, ArithmeticError, TypeError, ValueError) as exc:
            log.warning("template.failed", transition_id=transition.id, error=f"{type(exc).__name__}: {exc}")
            return fallback


def compile_template(source: str) -> Template:
    """Compile and try a template; :class:`ValueError` with the reason if it is broken."""
    try:
        template = Template(source)
        template._template.render(_context(SAMPLE))
    except (TemplateError, ArithmeticError, TypeError, ValueError) as exc:
        raise ValueError(f"template is broken: {type(exc).__name__}: {exc}") from None
    return template
