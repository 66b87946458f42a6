"""Which events are new: the cursor of one model and the transitions it yields.

Pure and synchronous: no I/O, no clock (the caller passes ``detected_at``), no anyio.

Three things make "new" harder than "later than the last one":

- **Late events.** An API that is eventually consistent, or whose writers' clocks
  disagree, can add an event stamped a little *before* the newest one already seen.
  The cursor remembers every event of a look-back window (``lookback_ns``) below its
  newest, so such an event is reported once and a known one is never reported twice.
- **Lazy baselines.** A first start takes a model's history from the model list,
  without reading its events: everything up to the list's ``updated_at`` is history.
  ``updated_at`` is coarser than event stamps and comes from another clock, so the
  event that made the status the list showed may be stamped up to ``clock_skew_ns``
  after it; such an event is history too (see :func:`_resolve_lazy`).
- **Undated events** (no usable ``created_at``) are told apart by status, user and
  position, and reported once, after the dated ones, in the order first seen.

A transition is a change of status: an event whose status equals the one before it
(a twin, a repeat) is remembered, never sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace

from ftwatch.model import Event, ModelInfo, Transition, format_timestamp
from ftwatch.state import (
    DEFAULT_CLOCK_SKEW_NS,
    DEFAULT_LOOKBACK_NS,
    EMPTY,
    Cursor,
    CycleDiff,
    DiffContext,
    EventKey,
    Fetched,
    ModelState,
    ReadWindow,
    UndatedKey,
)

__all__ = [
    "DEFAULT_CLOCK_SKEW_NS",
    "DEFAULT_LOOKBACK_NS",
    "Cursor",
    "EventKey",
    "UndatedKey",
    "diff_events",
    "diff_histories",
    "transition_id",
    "undated_transition_id",
]


def transition_id(model_id: str, created_at_ns: int, status: str, user_id: str | None, position: int) -> str:
    """A stable id: the same event of the same model always gets the same one."""
    raw = f"{model_id}\x1f{created_at_ns}\x1f{status}\x1f{user_id or ''}\x1f{position}"
    return "ftw_" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def undated_transition_id(model_id: str, key: UndatedKey) -> str:
    status, user, position = key
    raw = f"{model_id}\x1fundated\x1f{status}\x1f{user}\x1f{position}"
    return "ftw_" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def _keyed(events: list[Event]) -> tuple[list[tuple[Event, EventKey]], list[tuple[Event, UndatedKey]]]:
    """Dated events sorted, with their keys; undated ones in the order the API gave."""
    counts: dict[tuple[int, int, str, str], int] = {}

    def position(event: Event) -> int:
        ident = event.sort_key()
        counts[ident] = counts.get(ident, 0) + 1
        return counts[ident] - 1

    dated = [
        (event, (event.created_at_ns, event.status, event.user_id or "", position(event)))
        for event in sorted(events, key=Event.sort_key)
        if event.created_at_ns is not None
    ]
    undated = [(e, (e.status, e.user_id or "", position(e))) for e in events if e.created_at_ns is None]
    return dated, undated


def diff_events(
    model_id: str,
    model_name: str | None,
    cursor: Cursor | None,
    events: Iterable[Event],
    window: ReadWindow,
) -> tuple[Cursor, list[Transition]]:
    """Compare a model's events with its cursor.

    ``cursor`` is ``None`` for a model never seen before. Then, with the window's
    ``baseline``, its whole history is taken as known and nothing is reported (first
    start), or, with ``catch_up_from``, the history before that instant only (a start
    on empty state that catches up); without ``baseline``, it is a new job and every
    event is a transition. Transitions come oldest first, each with the status of the
    event before it; undated ones come last (and are history in a baseline).
    """
    baseline, detected_at_ns, catch_up_from_ns = window.baseline, window.detected_at_ns, window.catch_up_from
    lookback_ns, clock_skew_ns = window.lookback_ns, window.clock_skew_ns
    events = list(events)
    dated, undated = _keyed(events)
    if cursor is None and baseline:
        known = dated if catch_up_from_ns is None else [(e, k) for e, k in dated if k[0] < catch_up_from_ns]
        last = known[-1][0].status if known else None
        cursor = _remember(EMPTY, known, undated, last, lookback_ns)
        if len(known) == len(dated):
            return cursor, []
    if cursor is not None and cursor.lazy:
        cursor = _resolve_lazy(cursor, dated, undated, lookback_ns, clock_skew_ns)
    start = cursor or EMPTY

    # Milliseconds, as in the contract's example: a watcher's clock says no more.
    detected_at = format_timestamp(detected_at_ns, digits=3)
    transitions = _dated_transitions(model_id, model_name, start, dated, detected_at)
    newest_read = dated[-1][1][0] if dated else None
    if newest_read is None or (start.at_ns is not None and newest_read < start.at_ns):
        last_status = start.last_status  # the read saw nothing as new as the cursor
    else:
        last_status = dated[-1][0].status
    transitions += _undated_transitions(model_id, model_name, start, undated, last_status, detected_at_ns)
    return _remember(start, dated, undated, last_status, lookback_ns), transitions


def _dated_transitions(
    model_id: str, model_name: str | None, start: Cursor, dated: list[tuple[Event, EventKey]], detected_at: str
) -> list[Transition]:
    """The new dated events that change the status, oldest first."""
    transitions: list[Transition] = []
    previous = start.last_status
    for event, key in dated:
        is_new = (start.horizon_ns is None or key[0] >= start.horizon_ns) and key not in start.recent
        if is_new and event.status != previous:
            transitions.append(
                Transition(
                    id=transition_id(model_id, key[0], event.status, event.user_id, key[3]),
                    model_id=model_id,
                    model_name=model_name,
                    status=event.status,
                    previous_status=previous,
                    occurred_at=format_timestamp(key[0]),
                    user_id=event.user_id,
                    detected_at=detected_at,
                )
            )
        # The next event's previous status is this one's, new or known: a late event
        # slots in between the two it fell between.
        previous = event.status
    return transitions


def _undated_transitions(
    model_id: str,
    model_name: str | None,
    start: Cursor,
    undated: list[tuple[Event, UndatedKey]],
    previous: str | None,
    detected_at_ns: int,
) -> list[Transition]:
    """Undated events: after the dated ones, in the order first seen, each once."""
    transitions: list[Transition] = []
    for event, ukey in undated:
        if ukey in start.undated or event.status == previous:
            continue
        transitions.append(
            Transition(
                id=undated_transition_id(model_id, ukey),
                model_id=model_id,
                model_name=model_name,
                status=event.status,
                previous_status=previous,
                occurred_at=format_timestamp(detected_at_ns),
                user_id=event.user_id,
                detected_at=format_timestamp(detected_at_ns, digits=3),
            )
        )
        previous = event.status
    return transitions


def _resolve_lazy(
    cursor: Cursor,
    dated: list[tuple[Event, EventKey]],
    undated: list[tuple[Event, UndatedKey]],
    lookback_ns: int,
    clock_skew_ns: int,
) -> Cursor:
    """Turn a baseline from the list into a real cursor, now that the events are read.

    History is every event up to ``updated_at``, and further up to the last event
    within ``clock_skew_ns`` after it that has the status the list showed: that event
    is the one the list was showing, stamped by a finer or another clock. An event in
    that window with another status came after the baseline and is new.
    """
    assert cursor.at_ns is not None
    updated_at, baseline_status = cursor.at_ns, cursor.last_status
    boundary = -1
    for index, (event, key) in enumerate(dated):
        if key[0] <= updated_at or (key[0] <= updated_at + clock_skew_ns and event.status == baseline_status):
            boundary = index
    known = dated[: boundary + 1]
    last = known[-1][0].status if known else baseline_status
    # Undated events cannot be placed in time: those there at the first read are history.
    return _remember(EMPTY, known, undated, last, lookback_ns)


def _remember(
    start: Cursor,
    dated: list[tuple[Event, EventKey]],
    undated: list[tuple[Event, UndatedKey]],
    last_status: str | None,
    lookback_ns: int,
) -> Cursor:
    """The cursor after these events were seen, keeping only the look-back window."""
    stamps = [key[0] for _, key in dated]
    if start.at_ns is not None:
        stamps.append(start.at_ns)
    if not stamps:
        return Cursor(None, frozenset(), last_status, horizon_ns=None, undated=start.undated | _ukeys(undated))
    at_ns = max(stamps)
    horizon = at_ns - lookback_ns
    if start.horizon_ns is not None:
        horizon = max(horizon, start.horizon_ns)
    recent = frozenset(k for k in start.recent | {key for _, key in dated} if k[0] >= horizon)
    return Cursor(at_ns, recent, last_status, horizon_ns=horizon, undated=start.undated | _ukeys(undated))


def _ukeys(undated: list[tuple[Event, UndatedKey]]) -> frozenset[UndatedKey]:
    return frozenset(key for _, key in undated)


def diff_histories(state: Mapping[str, ModelState], fetched: Mapping[str, Fetched], context: DiffContext) -> CycleDiff:
    """A history source's cycle: each model's events against its cursor."""
    changed: dict[str, ModelState] = {}
    transitions: list[Transition] = []
    undated_notes: list[tuple[str, str, int]] = []
    events_read = 0
    for model_id, item in fetched.items():
        old = state.get(model_id)
        info = item.info
        if item.lazy_baseline:
            assert info.updated_at_ns is not None
            cursor = Cursor(info.updated_at_ns, frozenset(), info.status, lazy=True)
            changed[model_id] = ModelState(cursor, info.name, info.status, info.updated_at)
            continue
        if item.events is None:
            if old is not None and old.name != info.name:
                changed[model_id] = replace(old, name=info.name)
            continue
        events_read += len(item.events)
        cursor, new = diff_events(model_id, info.name, old.cursor if old else None, item.events, context.window)
        undated = cursor.undated - (old.cursor.undated if old else frozenset())
        if undated and old is not None and old.cursor.lazy:
            # A baseline from the list cannot place them in time: they were there.
            undated_notes.append(("baseline.undated", model_id, len(undated)))
        elif undated and not context.window.baseline:
            # Reported with the time they were first seen: said once.
            undated_notes.append(("event.undated", model_id, len(undated)))
        changed[model_id] = _after_read(old, info, cursor, item.events)
        transitions.extend(new)
    return CycleDiff(changed, transitions, events_read, tuple(undated_notes))


def _after_read(old: ModelState | None, info: ModelInfo, cursor: Cursor, events: list[Event]) -> ModelState:
    """The row of a model whose events were read: what the list said is remembered
    only once the events agree with it, so an event that lags behind the list is
    read again next cycle."""
    consistent = not events or cursor.last_status == info.status
    return ModelState(
        cursor=cursor,
        name=info.name,
        list_status=info.status if consistent else (old.list_status if old else None),
        list_updated=info.updated_at if consistent else (old.list_updated if old else None),
        stalled=old.stalled if old else None,  # the stay's alert, if the stay goes on
    )
