"""How a status looks: every built-in word as its state does, on both surfaces, but
for Cohere's two words of their own; a word nobody knows is plain."""

from __future__ import annotations

import pytest

from ftwatch.app.view import status_text
from ftwatch.looks import look_of
from ftwatch.model import Transition
from ftwatch.notifiers.slack import slack_message
from ftwatch.statuses import BUILT_IN, STATES

_OWN = {"STATUS_DEPLOYING_API", "STATUS_TEMPORARILY_OFFLINE"}
WORDS = sorted((provider, word) for provider, v in BUILT_IN.items() for word in v.states if word not in _OWN)


@pytest.mark.parametrize(("provider", "word"), WORDS)
def test_every_built_in_word_looks_as_its_state(provider: str, word: str) -> None:
    state = BUILT_IN[provider].state_of(word)
    assert look_of(word) == look_of(None, state) == look_of(word, state)
    assert status_text(word).style == look_of(None, state).colour
    assert status_text(word).plain.startswith(look_of(None, state).symbol + " ")


def test_each_state_looks_its_own_way_and_only_unknown_is_plain() -> None:
    looks = [look_of(None, state) for state in STATES]
    assert len({(look.colour, look.symbol) for look in looks}) == len(STATES)
    assert look_of("NO_SUCH_WORD") == look_of(None, "unknown") == look_of(None, None)
    assert look_of("NO_SUCH_WORD").colour == ""
    assert status_text("NO_SUCH_WORD").plain.startswith("· ")


def test_cohere_s_watched_words_look_unlike_their_states_and_alike_everywhere() -> None:
    deploying, offline = look_of("STATUS_DEPLOYING_API"), look_of("STATUS_TEMPORARILY_OFFLINE")
    assert deploying != look_of(None, "running")
    assert deploying.emoji == look_of(None, "running").emoji
    assert offline.emoji == ":warning:"
    assert offline.symbol != look_of(None, "paused").symbol
    # The word's own look wins over whatever state the transition's source gave it.
    assert look_of("STATUS_TEMPORARILY_OFFLINE", "paused") == offline
    message = slack_message(
        Transition(
            "ftw_1", "ft-9", "bot", "STATUS_DEPLOYING_API", "STATUS_FINETUNING", "2026-11-01T12:00:00Z", None, "x"
        )
    )
    assert message["blocks"][0]["text"]["text"].startswith(f"{deploying.emoji} *bot*")


def test_a_transition_s_own_state_decides_a_word_no_vocabulary_knows() -> None:
    """A plug-in's word: Slack's emoji is its transition's state's."""
    assert look_of("Trained", "ready") == look_of(None, "ready")
