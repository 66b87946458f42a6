"""How a transition reads to people: the words stdout, Apprise, the live view and the
default Slack text share. Pure."""

from __future__ import annotations

from ftwatch.duration import format_duration
from ftwatch.model import Transition, human_status

__all__ = ["headline", "human_status", "stuck", "text_line"]


def text_line(transition: Transition) -> str:
    """One line: when, which model, from what to what (or how long it is stuck)."""
    name = transition.model_name or "?"
    if transition.stalled:
        return f"{transition.detected_at}  {name} ({transition.model_id})  {stuck(transition)}"
    previous = human_status(transition.previous_status) if transition.previous_status else "(none)"
    line = f"{transition.occurred_at}  {name} ({transition.model_id})  {previous} -> {human_status(transition.status)}"
    if transition.failure_message:  # OpenAI's and Bedrock's reason, on one line
        line += ": " + " ".join(transition.failure_message.split())[:300]
    return line


def headline(transition: Transition) -> str:
    """A title: "my-classifier is ready", "my-classifier is stuck in finetuning for 26 h"."""
    if transition.stalled:
        return f"{transition.model_name or transition.model_id} is {stuck(transition)}"
    return f"{transition.model_name or transition.model_id} is {human_status(transition.status)}"


def stuck(transition: Transition) -> str:
    """ "stuck in finetuning for 26 h" (since when it entered it)."""
    stayed = format_duration(transition.stalled_for_s or 0.0)
    return f"stuck in {human_status(transition.status)} for {stayed} (since {transition.since})"
