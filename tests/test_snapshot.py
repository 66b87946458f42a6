"""The snapshot diff (OpenAI, Bedrock): properties over random job lives and polls."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ftwatch.diff import Cursor
from ftwatch.model import Event, ModelInfo, format_timestamp
from ftwatch.snapshot import baseline_cursor, diff_snapshot, snapshot_transition_id
from ftwatch.state import DiffContext, ReadWindow, SourceIdentity
from ftwatch.statuses import BUILT_IN, Vocabulary

S = 1_000_000_000
WORDS = ("validating_files", "queued", "running", "paused", "succeeded")


def _context(provider: str, source: str, detected_at_ns: int, *, baseline: bool = False) -> DiffContext:
    """A cycle of ``provider``'s source ``source`` that saw its reads at ``detected_at_ns``."""
    words = BUILT_IN.get(provider) or Vocabulary(provider, {})
    return DiffContext(SourceIdentity(source, provider, source), words, ReadWindow(baseline, detected_at_ns))


@st.composite
def lives(draw: st.DrawFn) -> tuple[list[Event], list[int]]:
    """A job's steps (a status each, times that may share a second) and the indices
    of the steps after which a poll looks, each poll seeing a status new to it."""
    count = draw(st.integers(2, 9))
    statuses = [draw(st.sampled_from(WORDS))]
    while len(statuses) < count:
        statuses.append(draw(st.sampled_from([w for w in WORDS if w != statuses[-1]])))
    gaps = draw(st.lists(st.sampled_from([0, 1, 7]), min_size=count, max_size=count))
    at, steps = 1_800_000_000 * S, []
    for status, gap in zip(statuses, gaps, strict=True):
        # Seconds cannot tell two stays of one status in the same second apart.
        same_second = {step.status for step in steps if step.created_at_ns == at}
        at += (gap or (1 if status in same_second else 0)) * S
        steps.append(Event(status, at))
    polls = sorted(draw(st.sets(st.integers(1, count - 1), min_size=1)))
    seen = [0, *polls]
    polls = [p for previous, p in zip(seen, polls, strict=False) if statuses[p] != statuses[previous]]
    return steps, polls


def _run(steps: list[Event], polls: list[int], *, full_history: bool, provider: str = "openai"):
    """Baseline after the first step, then one diff per poll; what each poll gave."""
    first = steps[0]
    cursor: Cursor = baseline_cursor(ModelInfo("job", "j", first.status, format_timestamp(first.created_at_ns or 0)))
    out = []
    for index in polls:
        now = steps[index]
        info = ModelInfo("job", "j", now.status, None if full_history else format_timestamp(now.created_at_ns or 0))
        history = steps[: index + 1] if full_history else [now]
        detected = (now.created_at_ns or 0) + S // 2
        change = diff_snapshot("job", info, cursor, history, _context(provider, "s", detected))
        again = diff_snapshot("job", info, change.cursor, history, _context(provider, "s", detected))
        assert again.transitions == []  # the same snapshot twice: nothing twice
        assert change.cursor.last_status == now.status
        assert change.cursor.at_ns is not None
        assert cursor.at_ns is None or change.cursor.at_ns >= cursor.at_ns
        out.append(change.transitions)
        cursor = change.cursor
    return out


def _collapsed(statuses: list[str]) -> list[str]:
    return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]


@settings(max_examples=300)
@given(lives())
def test_with_a_history_every_step_between_polls_is_reported_once_in_order(life: tuple[list[Event], list[int]]) -> None:
    steps, polls = life
    if not polls:
        return
    reported = [t for batch in _run(steps, polls, full_history=True) for t in batch]
    walked = _collapsed([s.status for s in steps[: polls[-1] + 1]])
    assert [t.status for t in reported] == walked[1:]
    assert [t.previous_status for t in reported] == walked[:-1]
    assert len({t.id for t in reported}) == len(reported) or len(set(walked)) < len(walked)


@given(lives())
def test_without_a_history_each_poll_reports_the_jump_it_saw(life: tuple[list[Event], list[int]]) -> None:
    steps, polls = life
    batches = _run(steps, polls, full_history=False, provider="bedrock")
    seen = [steps[0].status] + [steps[i].status for i in polls]
    for batch, (before, after) in zip(batches, itertools.pairwise(seen), strict=True):
        assert [(t.previous_status, t.status) for t in batch] == [(before, after)]
        assert batch[0].provider == "bedrock"


def test_ids_are_stable_and_differ_between_providers_and_steps() -> None:
    one = snapshot_transition_id("openai", "ftjob-1", "queued", "running", 5)
    assert one == snapshot_transition_id("openai", "ftjob-1", "queued", "running", 5)
    assert one != snapshot_transition_id("bedrock", "ftjob-1", "queued", "running", 5)
    assert one != snapshot_transition_id("openai", "ftjob-1", "queued", "running", None)
    assert one != snapshot_transition_id("openai", "ftjob-1", "running", "queued", 5)


def test_a_failure_and_a_success_carry_what_the_provider_said() -> None:
    cursor = Cursor(1, frozenset(), "running")
    failed = ModelInfo("j", None, "failed", format_timestamp(9 * S), failure="bad file")
    change = diff_snapshot("j", failed, cursor, [], _context("openai", "o", 10 * S))
    (t,) = change.transitions
    assert (t.failure_message, t.fine_tuned_model, t.occurred_at) == ("bad file", None, format_timestamp(9 * S))
    done = ModelInfo("j", None, "succeeded", None, fine_tuned_model="ft:gpt:x")
    (t,) = diff_snapshot("j", done, cursor, [], _context("openai", "o", 10 * S)).transitions
    assert (t.fine_tuned_model, t.failure_message, t.state) == ("ft:gpt:x", None, "ready")
    assert t.occurred_at == format_timestamp(10 * S, 3)  # no time from the provider: when it was noticed


def test_steps_stamped_in_the_second_a_baseline_was_taken_in_are_not_lost() -> None:
    """OpenAI stamps whole seconds, ftwatch notices in nanoseconds: a baseline at
    12:00:00.7 and steps stamped 12:00:00 may well have come after it."""
    second = 1_800_000_000 * S
    cursor = baseline_cursor(ModelInfo("j", None, "queued"))  # baselined at 12:00:00.7
    history = [Event("validating_files", second), Event("queued", second), Event("running", second)]
    history.append(Event("succeeded", second))
    info = ModelInfo("j", None, "succeeded", format_timestamp(second))
    change = diff_snapshot("j", info, cursor, history, _context("openai", "o", second + 2 * S))
    assert [(t.previous_status, t.status) for t in change.transitions] == [
        ("queued", "running"),
        ("running", "succeeded"),
    ]
