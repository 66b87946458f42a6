"""How a transition reads to people: the words stdout, Apprise, the live view and the
default Slack text share. Pure."""

from __future__ import annotations

from ftwatch.model import Transition, human_status

__all__ = ["headline", "human_status", "text_line"]


def text_line(transition: Transition) -> str:
    """One line: when, which model, from what to what."""
    name = transition.model_name or "?"
    previous = human_status(transition.previous_status) if transition.previous_status else "(none)"
    return f"{transition.occurred_at}  {name} ({transition.model_id})  {previous} -> {human_status(transition.status)}"


def headline(transition: Transition) -> str:
    """A title: "my-classifier is ready"."""
    return f"{transition.model_name or transition.model_id} is {human_status(transition.status)}"
