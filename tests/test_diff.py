"""The diff: every event after the baseline is reported once, whatever the clocks and order."""

from __future__ import annotations

import itertools
import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ftwatch.diff import DEFAULT_CLOCK_SKEW_NS, DEFAULT_LOOKBACK_NS, Cursor, diff_events, transition_id
from ftwatch.model import Event, Transition
from ftwatch.state import ReadWindow
from ftwatch.store import ModelState
from ftwatch.store.base import CycleCommit
from ftwatch.store.sqlite import SqliteStore as Store

SECOND = 1_000_000_000
USERS = st.sampled_from([None, "u1", "u2"])

# Each step appends events at or after the newest one: (gap in ns, user). Statuses are
# made unique per event (S0, S1, …), so every event is a change of status and must be
# reported; repeats have tests of their own below.
STEP = st.lists(st.tuples(st.integers(0, 2), USERS), min_size=0, max_size=4)


def _grow(steps: list[list[tuple[int, str | None]]]) -> list[list[Event]]:
    history: list[Event] = []
    snapshots = []
    for step in steps:
        for gap, user in step:
            last = history[-1].created_at_ns if history else 1_000
            assert last is not None
            history.append(Event(f"S{len(history)}", last + gap, user))
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
        cursor, new = diff_events("ft-1", "m", cursor, shuffled, ReadWindow(baseline=baseline, detected_at_ns=0))
        sent.extend(new)
        baseline = False
    return cursor, sent


def _id(event: Event) -> str:
    assert event.created_at_ns is not None
    return transition_id("ft-1", event.created_at_ns, event.status, event.user_id, 0)


@settings(max_examples=300)
@given(st.lists(STEP, min_size=1, max_size=8), st.integers())
def test_every_event_is_sent_once_oldest_first(steps: list[list[tuple[int, str | None]]], seed: int) -> None:
    """A growing history read in any order yields each event once, oldest first."""
    snapshots = _grow(steps)
    _, sent = _poll_all(snapshots, baseline=False, seed=seed)
    everything = snapshots[-1]
    assert len(sent) == len(everything)
    assert len({t.id for t in sent}) == len(sent)
    assert [t.occurred_at for t in sent] == sorted(t.occurred_at for t in sent)
    # Polling all at once gives the same transitions: ids depend on events, not on polls.
    _, at_once = diff_events("ft-1", "m", None, everything, ReadWindow(baseline=False, detected_at_ns=0))
    assert {t.id for t in at_once} == {t.id for t in sent}


@settings(max_examples=200)
@given(st.lists(STEP, min_size=2, max_size=8), st.integers())
def test_baseline_sends_nothing_then_only_what_is_new(steps: list[list[tuple[int, str | None]]], seed: int) -> None:
    """The first read is history; afterwards exactly the events added since are sent."""
    snapshots = _grow(steps)
    cursor, first = diff_events("ft-1", "m", None, snapshots[0], ReadWindow(baseline=True, detected_at_ns=0))
    assert first == []
    _, sent = _poll_all(snapshots[1:], baseline=False, seed=seed, cursor=cursor)
    assert {t.id for t in sent} == {_id(e) for e in snapshots[-1][len(snapshots[0]) :]}


@given(st.lists(STEP, min_size=2, max_size=6))
def test_previous_status_chains_transitions(steps: list[list[tuple[int, str | None]]]) -> None:
    """Events appended later in time chain: each one's previous status is the one sent before it."""
    snapshots = _grow([[(gap + 1, user) for gap, user in step] for step in steps])
    _, sent = _poll_all(snapshots, baseline=False, seed=0)
    if sent:
        assert sent[0].previous_status is None
    for before, after in itertools.pairwise(sent):
        assert after.previous_status == before.status


@given(st.lists(STEP, min_size=2, max_size=6))
def test_reading_only_the_pages_after_the_horizon_is_enough(steps: list[list[tuple[int, str | None]]]) -> None:
    """Newest first, stopping at the cursor's horizon, gives what the whole history gives."""
    snapshots = _grow(steps)
    cursor, _ = diff_events("ft-1", "m", None, snapshots[0], ReadWindow(baseline=True, detected_at_ns=0))
    _, full = diff_events("ft-1", "m", cursor, snapshots[-1], ReadWindow(baseline=False, detected_at_ns=0))
    horizon = cursor.horizon_ns
    recent = [e for e in snapshots[-1] if horizon is None or (e.created_at_ns or 0) >= horizon]
    _, partial = diff_events("ft-1", "m", cursor, recent, ReadWindow(baseline=False, detected_at_ns=0))
    assert [t.id for t in partial] == [t.id for t in full]


@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["A", "B"])), min_size=1, max_size=12))
def test_a_transition_never_repeats_its_previous_status(events: list[tuple[int, str]]) -> None:
    """Events that repeat the status before them are remembered, never sent."""
    history, at = [], 1_000
    for gap, status in events:
        at += gap
        history.append(Event(status, at))
    _, sent = diff_events("ft-1", "m", None, history, ReadWindow(baseline=False, detected_at_ns=0))
    assert all(t.status != t.previous_status for t in sent)
    assert len({t.id for t in sent}) == len(sent)


def _restart(cursor: Cursor, store_dir: Path) -> Cursor:
    """A stop and start: the cursor goes through the real state file and back."""
    store = Store(store_dir / "state.db")
    try:
        store.commit_cycle(CycleCommit.of({"ft-1": ModelState(cursor, "m")}, [], [], now=0.0))
        return store.load_models()["ft-1"].cursor
    finally:
        store.close()


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3 * SECOND), USERS),
        st.tuples(st.just("late"), st.integers(0, DEFAULT_LOOKBACK_NS // 3), USERS),
        st.tuples(st.just("poll"), st.booleans(), st.none()),
        st.tuples(st.just("restart"), st.none(), st.none()),
    ),
    max_size=14,
)


@settings(max_examples=250)
@given(
    baseline_gaps=st.lists(st.integers(0, 2 * SECOND), min_size=1, max_size=5),
    skew=st.integers(-SECOND, SECOND),
    coarse=st.booleans(),
    lazy=st.booleans(),
    actions=ACTIONS,
    seed=st.integers(),
)
def test_skewed_clocks_late_events_and_restarts_report_each_event_once(
    baseline_gaps: list[int], skew: int, coarse: bool, lazy: bool, actions: list[tuple[str, object, object]], seed: int
) -> None:
    """With updated_at up to a second off the last event (and coarser), late events
    inside the look-back, identical stamps and restarts, every event after the baseline
    is reported exactly once and nothing from the baseline ever is."""
    shuffle = random.Random(seed)
    history: list[Event] = []
    at = 1_800_000_000 * SECOND + 123_456_789
    for gap in baseline_gaps:
        at += gap
        history.append(Event(f"S{len(history)}", at))
    last = history[-1]
    assert last.created_at_ns is not None
    # updated_at from another clock (up to a second either way), maybe microseconds only.
    updated_at = last.created_at_ns + skew
    if coarse:
        updated_at -= updated_at % 1_000
    if lazy:
        cursor: Cursor = Cursor(updated_at, frozenset(), last.status, lazy=True)
    else:
        cursor, first = diff_events("ft-1", "m", None, history, ReadWindow(baseline=True, detected_at_ns=0))
        assert first == []
    # What happens after the baseline is stamped later than anything it can be confused with.
    earliest_new = max(updated_at, last.created_at_ns) + DEFAULT_CLOCK_SKEW_NS + 1
    newest = last.created_at_ns
    expected: set[str] = set()
    sent: list[Transition] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, number, user in [*actions, ("poll", True, None)]:
            if kind in ("append", "late"):
                assert isinstance(number, int)
                stamp = newest + number if kind == "append" else newest - number
                stamp = max(stamp, earliest_new)
                event = Event(f"S{len(history)}", stamp, user if isinstance(user, str) else None)
                history.append(event)
                expected.add(_id(event))
                newest = max(newest, stamp)
            elif kind == "restart":
                cursor = _restart(cursor, Path(tmp))
            else:
                horizon = None if cursor.lazy else cursor.horizon_ns
                read = [e for e in history if number or horizon is None or (e.created_at_ns or 0) >= horizon]
                shuffle.shuffle(read)
                cursor, new = diff_events("ft-1", "m", cursor, read, ReadWindow(baseline=False, detected_at_ns=0))
                sent.extend(new)
    assert len({t.id for t in sent}) == len(sent), "an event was reported twice"
    assert {t.id for t in sent} == expected


def test_a_repeated_status_is_remembered_not_sent() -> None:
    """Twins (same status, same instant) and repeats are not status changes."""
    twins = [Event("STATUS_READY", 5_000), Event("STATUS_READY", 5_000), Event("STATUS_READY", 6_000)]
    cursor, sent = diff_events("ft-1", "m", None, twins, ReadWindow(baseline=False, detected_at_ns=0))
    assert [(t.status, t.previous_status) for t in sent] == [("STATUS_READY", None)]
    _, again = diff_events("ft-1", "m", cursor, twins, ReadWindow(baseline=False, detected_at_ns=0))
    assert again == []


def test_a_late_event_at_the_cursor_instant_is_new() -> None:
    """An event arriving late at exactly the newest instant is still reported."""
    cursor, _ = diff_events(
        "ft-1", "m", None, [Event("STATUS_FINETUNING", 7_000)], ReadWindow(baseline=True, detected_at_ns=0)
    )
    late = [Event("STATUS_FINETUNING", 7_000), Event("STATUS_READY", 7_000, "u9")]
    _, sent = diff_events("ft-1", "m", cursor, late, ReadWindow(baseline=False, detected_at_ns=0))
    assert [(t.status, t.user_id, t.previous_status) for t in sent] == [("STATUS_READY", "u9", "STATUS_FINETUNING")]


def test_a_late_event_inside_the_lookback_is_sent_once_and_an_old_one_never() -> None:
    """Stamped before the newest event but inside the window: sent once; past it: history."""
    t0 = 1_800_000_000 * SECOND
    history = [Event("STATUS_QUEUED", t0), Event("STATUS_FINETUNING", t0 + 100 * SECOND)]
    cursor, _ = diff_events("ft-1", "m", None, history, ReadWindow(baseline=True, detected_at_ns=0))
    late = Event("STATUS_PAUSED", t0 + 60 * SECOND)
    cursor, sent = diff_events("ft-1", "m", cursor, [*history, late], ReadWindow(baseline=False, detected_at_ns=0))
    assert [(t.status, t.previous_status) for t in sent] == [("STATUS_PAUSED", "STATUS_QUEUED")]
    _, again = diff_events("ft-1", "m", cursor, [*history, late], ReadWindow(baseline=False, detected_at_ns=0))
    assert again == []
    too_old = Event("STATUS_FAILED", t0 + 100 * SECOND - DEFAULT_LOOKBACK_NS - 1)
    _, old = diff_events("ft-1", "m", cursor, [*history, late, too_old], ReadWindow(baseline=False, detected_at_ns=0))
    assert old == []


def test_undated_events_are_reported_once_after_the_dated_ones() -> None:
    """No created_at: reported at the time first seen, once, never dropped."""
    cursor, _ = diff_events(
        "ft-1", "m", None, [Event("STATUS_QUEUED", 1_000)], ReadWindow(baseline=True, detected_at_ns=0)
    )
    events = [Event("STATUS_FAILED", None), Event("STATUS_FINETUNING", 2_000), Event("STATUS_QUEUED", 1_000)]
    cursor, sent = diff_events("ft-1", "m", cursor, events, ReadWindow(baseline=False, detected_at_ns=5 * SECOND))
    assert [(t.status, t.previous_status, t.occurred_at) for t in sent] == [
        ("STATUS_FINETUNING", "STATUS_QUEUED", "1970-01-01T00:00:00.000002000Z"),
        ("STATUS_FAILED", "STATUS_FINETUNING", "1970-01-01T00:00:05.000000000Z"),
    ]
    _, again = diff_events("ft-1", "m", cursor, events, ReadWindow(baseline=False, detected_at_ns=9 * SECOND))
    assert again == []


def test_a_lazy_baseline_survives_coarse_and_skewed_updated_at() -> None:
    """updated_at in microseconds, or a second before the event that set the status,
    still covers that event; a new status inside the skew window is new."""
    t = 1_800_000_000 * SECOND + 123_456_789
    history = [Event("STATUS_QUEUED", t - SECOND), Event("STATUS_READY", t)]
    for updated_at in (t - t % 1_000, t - SECOND + 1):
        cursor = Cursor(updated_at, frozenset(), "STATUS_READY", lazy=True)
        _, sent = diff_events("ft-1", "m", cursor, history, ReadWindow(baseline=False, detected_at_ns=0))
        assert sent == []
        moved = [*history, Event("STATUS_DELETED", t + 1_000)]
        _, sent = diff_events("ft-1", "m", cursor, moved, ReadWindow(baseline=False, detected_at_ns=0))
        assert [(s.status, s.previous_status) for s in sent] == [("STATUS_DELETED", "STATUS_READY")]


def test_transition_carries_the_contract_fields() -> None:
    """The webhook body has the contract's fields (the provider's, the source's and the
    normalized state too), nanoseconds and milliseconds kept."""
    _, [t] = diff_events(
        "ft-1",
        "my-classifier",
        None,
        [Event("STATUS_READY", 1_793_534_404_000_000_417, "u1")],
        ReadWindow(baseline=False, detected_at_ns=1_793_534_405_120_000_000),
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
        "provider": "cohere",
        "source": "cohere",
        "state": "ready",
    }


@given(st.lists(STEP, min_size=2, max_size=6), st.integers())
def test_a_lazy_baseline_from_updated_at_equals_a_read_one(
    steps: list[list[tuple[int, str | None]]], seed: int
) -> None:
    """A baseline taken from the list's updated_at, without reading events, sends the
    same transitions as one taken from the events (for events after that instant)."""
    later = [[(gap + DEFAULT_CLOCK_SKEW_NS + 1, user) for gap, user in step] for step in steps[1:]]
    snapshots = _grow([steps[0], *later])
    read, _ = diff_events("ft-1", "m", None, snapshots[0], ReadWindow(baseline=True, detected_at_ns=0))
    newest = max((e.created_at_ns or 0 for e in snapshots[0]), default=0)
    lazy = Cursor(newest, frozenset(), snapshots[0][-1].status if snapshots[0] else None, lazy=True)
    _, from_read = _poll_all(snapshots[1:], baseline=False, seed=seed, cursor=read)
    _, from_lazy = _poll_all(snapshots[1:], baseline=False, seed=seed, cursor=lazy)
    assert [t.id for t in from_lazy] == [t.id for t in from_read]
    assert [t.previous_status for t in from_lazy] == [t.previous_status for t in from_read]


@given(
    # Distinct stamps: the order of identical ones is the diff's own (tested elsewhere).
    stamps=st.lists(st.integers(min_value=0, max_value=10_000), min_size=0, max_size=12, unique=True),
    statuses=st.lists(st.sampled_from(["A", "B", "C"]), min_size=12, max_size=12),
    cutoff=st.integers(min_value=0, max_value=10_000),
)
def test_catch_up_reports_the_events_from_the_cutoff_on_and_nothing_before(
    stamps: list[int], statuses: list[str], cutoff: int
) -> None:
    """A model first seen with a catch-up window: an event is reported iff it is at or
    after the cutoff and its status differs from the event before it (known or new);
    a second look at the same history reports nothing."""
    events = [Event(statuses[i], ns) for i, ns in enumerate(sorted(stamps))]
    cursor, new = diff_events(
        "m", None, None, events, ReadWindow(baseline=True, detected_at_ns=20_000, catch_up_from=cutoff)
    )
    expected, previous = [], None
    for event in events:
        assert event.created_at_ns is not None
        if event.created_at_ns >= cutoff and event.status != previous:
            expected.append((previous, event.status))
        previous = event.status
    assert [(t.previous_status, t.status) for t in new] == expected
    _, again = diff_events("m", None, cursor, events, ReadWindow(baseline=False, detected_at_ns=30_000))
    assert again == []
