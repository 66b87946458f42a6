"""How a status looks where people see it: its colour and symbol in the terminal
(``ftwatch watch``), its emoji in Slack. Pure.

One table by normalized state serves every provider's words alike, so a state (or a
provider) added later looks the same on every surface; only two of Cohere's words,
which people watch for, look unlike their state. A word no vocabulary knows is plain.
"""

from __future__ import annotations

from typing import NamedTuple

from ftwatch.statuses import BUILT_IN

__all__ = ["Look", "look_of"]


class Look(NamedTuple):
    #: A rich style.
    colour: str
    symbol: str
    #: A Slack emoji code.
    emoji: str


_PLAIN = Look("", "·", ":information_source:")
_OF_STATE = {
    "queued": _PLAIN._replace(colour="bright_black", symbol="…"),
    "running": _PLAIN._replace(colour="cyan", symbol="◐"),
    "ready": Look("green", "✓", ":white_check_mark:"),
    "failed": Look("bold red", "✗", ":x:"),
    "cancelled": Look("bright_black", "⊘", ":no_entry_sign:"),
    "paused": Look("yellow", "‖", ":double_vertical_bar:"),
    "deleted": Look("bright_black", "⌫", ":wastebasket:"),
}
#: Cohere's deploying step is still running (Slack says so plainly); an offline model
#: is paused, and broken.
_OF_WORD = {
    "STATUS_DEPLOYING_API": _OF_STATE["running"]._replace(colour="blue", symbol="↑"),
    "STATUS_TEMPORARILY_OFFLINE": Look("magenta", "!", ":warning:"),
}
_STATE_OF_WORD = {word: state for vocabulary in BUILT_IN.values() for word, state in vocabulary.states.items()}


def look_of(status: str | None, state: str | None = None) -> Look:
    """How ``status`` looks: as its word, where the word has a look of its own; else as
    ``state`` (for a transition, the state its source gave the word), or else the
    state a built-in vocabulary gives it; else plain."""
    word = status or ""
    if word in _OF_WORD:
        return _OF_WORD[word]
    return _OF_STATE.get(state or _STATE_OF_WORD.get(word, ""), _PLAIN)
