"""How a transition reads to people: the words stdout, Apprise, the live view and the
default Slack text share. Pure."""

from __future__ import annotations

from ftwatch.duration import format_duration
from ftwatch.model import Transition, human_status
from ftwatch.progress import progress_words, summary_words
from ftwatch.textsafe import failure_text, printable

__all__ = ["headline", "how_far", "human_status", "plural", "reached", "stuck", "text_line"]


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 model``, ``2 models``, ``1 delivery``, ``0 deliveries``: counted right."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {many or (noun[:-1] + 'ies' if noun.endswith('y') else noun + 's')}"


def text_line(transition: Transition) -> str:
    """One line: when, which model, from what to what (or how long it is stuck).
    What came from the API is shown escaped: a name can never drive the terminal."""
    name = printable(transition.model_name or "?")
    model_id = printable(transition.model_id)
    if transition.stalled:
        return f"{transition.detected_at}  {name} ({model_id})  {printable(stuck(transition))}"
    previous = human_status(transition.previous_status) if transition.previous_status else "(none)"
    moved = printable(f"{previous} -> {human_status(transition.status)}")
    line = f"{printable(transition.occurred_at)}  {name} ({model_id})  {moved}"
    if transition.failure_message:  # OpenAI's and Bedrock's reason, on one line
        line += ": " + (failure_text(transition.failure_message, 300) or "")
    if far := how_far(transition):
        line += f" · {printable(far)}"
    return line


def how_far(transition: Transition) -> str:
    """How far the job got, in a line: "succeeded after 2 h 14 m, 3,000 steps, final
    loss 0.412 → ft:gpt-4o-mini:acme::AbC" on a terminal state, "step 500/3,000
    (17%), loss 0.830, ETA …" while running; "" when the provider tells nothing."""
    if transition.summary is not None:
        told = summary_words(transition.summary, human_status(transition.status))
        return "" if told == human_status(transition.status) else told
    if transition.progress is not None:
        return progress_words(transition.progress)
    return ""


def reached(status: str | None) -> str:
    """The verb phrase for a status in plain words: "succeeded", "failed", "is ready",
    "is finetuning" (a past participle stands alone: never "is succeeded")."""
    words = human_status(status)
    return words if words.endswith("ed") and " " not in words else f"is {words}"


def headline(transition: Transition) -> str:
    """A title: "my-classifier is ready", "my-classifier is stuck in finetuning for 26 h"."""
    if transition.stalled:
        return f"{transition.model_name or transition.model_id} is {stuck(transition)}"
    return f"{transition.model_name or transition.model_id} {reached(transition.status)}"


def stuck(transition: Transition) -> str:
    """ "stuck in finetuning for 26 h" (since when it entered it)."""
    stayed = format_duration(transition.stalled_for_s or 0.0)
    return f"stuck in {human_status(transition.status)} for {stayed} (since {transition.since})"
