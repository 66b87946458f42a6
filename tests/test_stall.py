"""Stall alerts: when one is due, that each stay gets one, and that time is the clock's."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftwatch.app import wiring
from ftwatch.clock import FakeClock
from ftwatch.diff import Cursor
from ftwatch.model import STALLED
from ftwatch.notifiers.slack import slack_message
from ftwatch.settings import Settings
from ftwatch.stall import check_stall
from ftwatch.store.base import ModelState
from ftwatch.store.sqlite import SqliteStore

from .providers import world

S = 10**9


def _state(status: str, since_ns: int, stalled: str | None = None) -> ModelState:
    return ModelState(Cursor(since_ns, frozenset(), status), name="m", stalled=stalled)


def _after(status: str | None) -> float | None:
    return {"STATUS_FINETUNING": 60.0}.get(status or "")


@given(stayed_s=st.floats(min_value=0, max_value=600), jitter_s=st.floats(min_value=-2, max_value=2))
def test_one_alert_per_stay_however_often_it_is_asked(stayed_s: float, jitter_s: float) -> None:
    """Due once the threshold has passed, never before; once remembered, asking again
    (even with `since` a second or two off, as a list-based baseline is) alerts no more."""
    since = 1_000 * S
    now = since + int(stayed_s * S)
    found = check_stall("m", _state("STATUS_FINETUNING", since), _after, now)
    assert (found is not None) == (stayed_s >= 60)
    if found is not None:
        alert, remembered = found
        assert alert.stalled_for_s == round(stayed_s, 3) or abs(alert.stalled_for_s - stayed_s) < 1e-3
        moved = ModelState(
            Cursor(since + int(jitter_s * S), frozenset(), "STATUS_FINETUNING"), stalled=remembered.stalled
        )
        assert check_stall("m", moved, _after, now + 3_600 * S) is None


def test_a_new_stay_alerts_again_with_its_own_id() -> None:
    """The next transition (a new `since`, or another status) re-arms the alert."""
    first = check_stall("m", _state("STATUS_FINETUNING", 0), _after, 100 * S)
    assert first is not None
    again = check_stall("m", _state("STATUS_FINETUNING", 50 * S, first[1].stalled), _after, 200 * S)
    assert again is not None
    assert again[0].id != first[0].id
    assert check_stall("m", _state("STATUS_READY", 0), _after, 10**6 * S) is None  # no threshold for ready


def test_slack_words_a_stall_plainly() -> None:
    """ "stuck in finetuning for 26 h", with the model's name."""
    found = check_stall("ft-1", _state("STATUS_FINETUNING", 0), _after, 26 * 3_600 * S)
    assert found is not None
    message = slack_message(found[0])
    assert "m is stuck in finetuning for 26 h" in message["text"]


@pytest.mark.anyio
async def test_a_stall_comes_when_the_clock_says_not_after_a_sleep(tmp_path: Path) -> None:
    """The poller takes its time from an injected clock: a job that stays running is
    alerted once two hours "pass", at once, and not again in the same stay."""
    with world("openai") as w:
        job = w.add("slow-bot", "running")
        settings = Settings.model_validate(
            {"sources": [w.source()], "stall": {"after": {"running": "1h"}}, "http": {"listen": ""}}
        )
        clock = FakeClock()
        async with wiring.api_client(settings) as http:
            ((spec, source),) = wiring.build_sources(settings, wiring.ApiAccess(http, environ=w.credentials(tmp_path)))
            store = SqliteStore(tmp_path / "state.db")
            poller = wiring.build_poller(source, store, settings, spec=spec, role=wiring.Role(daemon=True, clock=clock))
            assert (await poller.cycle()).transitions == []  # the baseline notices the stay now
            clock.advance(1800)
            assert (await poller.cycle()).transitions == []  # half an hour: not yet
            clock.advance(5400)
            (alert,) = (await poller.cycle()).transitions
            clock.advance(3600)
            again = (await poller.cycle()).transitions
    assert (alert.model_id, alert.type, alert.state, alert.stalled_for_s) == (job, STALLED, "running", 7200.0)
    assert again == []
