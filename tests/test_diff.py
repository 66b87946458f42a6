"""The diff: each event of a growing history becomes exactly one transition."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ftwatch.diff import Cursor, diff_events
from ftwatch.model import Event, Transition

STATUSES = st.sampled_from(["STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_READY", "STATUS_FAILED", "STATUS_NEW_KIND"])
USERS = st.sampled_from([None, "u1", "u2"])

# Each step appends events at or after the newest one (the API only ever appends,
# but several events may share an instant, and one may arrive late at that instant).
STEP = st.lists(st.tuples(st.integers(0, 2), STATUSES, USERS), min_size=0, max_size=4)


def _grow(steps: list[list[tuple[int, str, str | None]]]) -> list[list[Event]]:
    history: list[Event] = []
    snapshots = []
    for step in steps:
        for gap, status, user in step:
            last = history[-1].created_at_ns if history else 1_000
            history.append(Event(status, last + gap, user))
        snapshots.append(list(history))
    return snapshots


def _poll_all(
    snapshots: list[list[Event]], baseline: bool, seed: int, cursor: Cursor | None = None
) -> tuple[Cursor | None, list[Transition]]:
    shuffle = random.Random(seed)
    sent: list[Transition] = []
    for snapshot in snapshots:
        shuffled = list(snapshot)
        shuffle.shuffle(shuffled)  # the API's order is not to be trusted
        cursor, new = diff_events("ft-1", "m", cursor, shuffled, baseline=baseline, detected_at_ns=0)
        sent.extend(new)
        baseline = False
    return cursor, sent


@settings(max_examples=300)
@given(st.lists(STEP, min_size=1, max_size=8), st.integers())
def test_every_event_is_sent_once_oldest_first(steps: list[list[tuple[int, str, str | None]]], seed: int) -> None:
    snapshots = _grow(steps)
    _, sent = _poll_all(snapshots, baseline=False, seed=seed)
    everything = snapshots[-1]
    assert len(sent) == len(everything)
    assert len({t.id for t in sent}) == len(sent)
    assert [t.occurred_at for t in sent] == sorted(t.occurred_at for t in sent)
    # Polling all at once gives the same transitions: ids depend on events, not on polls.
    _, at_once = diff_events("ft-1", "m", None, everything, baseline=False, detected_at_ns=0)
    assert {t.id for t in at_once} == {t.id for t in sent}


@settings(max_examples=200)
@given(st.lists(STEP, min_size=2, max_size=8), st.integers())
def test_baseline_sends_nothing_then_only_what_is_new(
    steps: list[list[tuple[int, str, str | None]]], seed: int
) -> None:
    snapshots = _grow(steps)
    cursor, first = diff_events("ft-1", "m", None, snapshots[0], baseline=True, detected_at_ns=0)
    assert first == []
    _, sent = _poll_all(snapshots[1:], baseline=False, seed=seed, cursor=cursor)
    assert len(sent) == len(snapshots[-1]) - len(snapshots[0])


@given(st.lists(STEP, min_size=2, max_size=6))
def test_previous_status_chains_transitions(steps: list[list[tuple[int, str, str | None]]]) -> None:
    snapshots = _grow(steps)
    _, sent = _poll_all(snapshots, baseline=False, seed=0)
    if sent:
        assert sent[0].previous_status is None
    for before, after in itertools.pairwise(sent):
        assert after.previous_status == before.status


@given(st.lists(STEP, min_size=2, max_size=6), st.integers())
def test_reading_only_the_pages_after_the_cursor_is_enough(
    steps: list[list[tuple[int, str, str | None]]], seed: int
) -> None:
    """Newest first, stopping at the cursor, gives what the whole history gives."""
    snapshots = _grow(steps)
    cursor, _ = diff_events("ft-1", "m", None, snapshots[0], baseline=True, detected_at_ns=0)
    _, full = diff_events("ft-1", "m", cursor, snapshots[-1], baseline=False, detected_at_ns=0)
    assert cursor is not None
    recent = [e for e in snapshots[-1] if cursor.at_ns is None or e.created_at_ns >= cursor.at_ns]
    _, partial = diff_events("ft-1", "m", cursor, recent, baseline=False, detected_at_ns=0)
    assert [t.id for t in partial] == [t.id for t in full]


def test_identical_events_at_one_instant_are_two_transitions() -> None:
    twins = [Event("STATUS_READY", 5_000), Event("STATUS_READY", 5_000)]
    _, sent = diff_events("ft-1", "m", None, twins, baseline=False, detected_at_ns=0)
    assert len(sent) == 2
    assert sent[0].id != sent[1].id


def test_a_late_event_at_the_cursor_instant_is_new() -> None:
    cursor, _ = diff_events("ft-1", "m", None, [Event("STATUS_FINETUNING", 7_000)], baseline=True, detected_at_ns=0)
    late = [Event("STATUS_FINETUNING", 7_000), Event("STATUS_READY", 7_000, "u9")]
    _, sent = diff_events("ft-1", "m", cursor, late, baseline=False, detected_at_ns=0)
    assert [(t.status, t.user_id, t.previous_status) for t in sent] == [("STATUS_READY", "u9", "STATUS_FINETUNING")]


def test_transition_carries_the_contract_fields() -> None:
    _, [t] = diff_events(
        "ft-1",
        "my-classifier",
        None,
        [Event("STATUS_READY", 1_793_534_404_000_000_417, "u1")],
        baseline=False,
        detected_at_ns=1_793_534_405_120_000_000,
    )
    assert t.to_payload() == {
        "id": t.id,
        "type": "finetuned_model.status_changed",
        "model_id": "ft-1",
        "model_name": "my-classifier",
        "status": "STATUS_READY",
        "previous_status": None,
        "occurred_at": "2026-11-01T12:00:04.000000417Z",
        "user_id": "u1",
        "detected_at": "2026-11-01T12:00:05.120Z",
    }


@given(st.lists(STEP, min_size=2, max_size=6), st.integers())
def test_a_lazy_baseline_from_updated_at_equals_a_read_one(
    steps: list[list[tuple[int, str, str | None]]], seed: int
) -> None:
    """A baseline taken from the list's updated_at, without reading events, sends the
    same transitions as one taken from the events (for events after that instant)."""
    later = [[(gap + 1, status, user) for gap, status, user in step] for step in steps[1:]]
    snapshots = _grow([steps[0], *later])
    read, _ = diff_events("ft-1", "m", None, snapshots[0], baseline=True, detected_at_ns=0)
    newest = max((e.created_at_ns for e in snapshots[0]), default=0)
    lazy = Cursor(newest, frozenset(), snapshots[0][-1].status if snapshots[0] else None, lazy=True)
    _, from_read = _poll_all(snapshots[1:], baseline=False, seed=seed, cursor=read)
    _, from_lazy = _poll_all(snapshots[1:], baseline=False, seed=seed, cursor=lazy)
    assert [t.id for t in from_lazy] == [t.id for t in from_read]
    assert [t.previous_status for t in from_lazy] == [t.previous_status for t in from_read]
