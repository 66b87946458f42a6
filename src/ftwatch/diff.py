"""Which events are new: the cursor of one model and the transitions it yields.

Pure and synchronous: no I/O, no clock (the caller passes ``detected_at``), no anyio.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from ftwatch.model import Event, Transition, format_timestamp

__all__ = ["Cursor", "EventKey", "diff_events", "transition_id"]

#: What tells apart events at the same instant: status, user id, and the position
#: among events identical in all three (two identical events are still two events).
EventKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far into one model's history ftwatch has looked.

    ``at_ns`` is the newest ``created_at`` seen (``None``: the model was seen with
    an empty history); ``seen_at_last`` are the events at exactly that instant, so an
    event that arrives late with the same timestamp is still recognised as new.
    """

    at_ns: int | None
    seen_at_last: frozenset[EventKey]
    last_status: str | None
    #: A baseline taken from the model list without reading events: every event at
    #: or before ``at_ns`` (the model's ``updated_at``) counts as seen.
    lazy: bool = False


def transition_id(model_id: str, created_at_ns: int, status: str, user_id: str | None, position: int) -> str:
    """A stable id: the same event of the same model always gets the same one."""
    raw = f"{model_id}\x1f{created_at_ns}\x1f{status}\x1f{user_id or ''}\x1f{position}"
    return "ftw_" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def _keyed(events: Iterable[Event]) -> list[tuple[Event, EventKey]]:
    ordered = sorted(events, key=Event.sort_key)
    counts: dict[tuple[int, str, str], int] = {}
    keyed = []
    for event in ordered:
        ident = event.sort_key()
        position = counts.get(ident, 0)
        counts[ident] = position + 1
        keyed.append((event, (event.status, event.user_id or "", position)))
    return keyed


def diff_events(
    model_id: str,
    model_name: str | None,
    cursor: Cursor | None,
    events: Iterable[Event],
    *,
    baseline: bool,
    detected_at_ns: int,
) -> tuple[Cursor, list[Transition]]:
    """Compare a model's events with its cursor.

    ``cursor`` is ``None`` for a model never seen before. Then, with ``baseline``,
    its whole history is taken as known and nothing is reported (first start); without,
    it is a new job and every event is a transition. Transitions come oldest first,
    each with the status of the one before it.
    """
    keyed = _keyed(events)
    if cursor is None and baseline:
        return _advance(Cursor(None, frozenset(), None), keyed, keyed[-1][0].status if keyed else None), []
    if cursor is not None and cursor.lazy:
        # Turn the lazy baseline into a real cursor: what it covers is history.
        at = cursor.at_ns if cursor.at_ns is not None else -1
        known = [(e, k) for e, k in keyed if e.created_at_ns <= at]
        cursor = _advance(Cursor(None, frozenset(), None), known, known[-1][0].status if known else cursor.last_status)

    start = cursor or Cursor(None, frozenset(), None)
    new = [
        (event, key)
        for event, key in keyed
        if start.at_ns is None
        or event.created_at_ns > start.at_ns
        or (event.created_at_ns == start.at_ns and key not in start.seen_at_last)
    ]
    # Milliseconds, as in the contract's example: a watcher's clock says no more.
    detected_at = format_timestamp(detected_at_ns, digits=3)
    transitions = []
    previous = start.last_status
    for event, (status, _user, position) in new:
        transitions.append(
            Transition(
                id=transition_id(model_id, event.created_at_ns, status, event.user_id, position),
                model_id=model_id,
                model_name=model_name,
                status=status,
                previous_status=previous,
                occurred_at=event.created_at,
                user_id=event.user_id,
                detected_at=detected_at,
            )
        )
        previous = status
    return _advance(start, new, previous), transitions


def _advance(cursor: Cursor, new: list[tuple[Event, EventKey]], last_status: str | None) -> Cursor:
    if not new:
        return Cursor(cursor.at_ns, cursor.seen_at_last, last_status)
    newest = max(event.created_at_ns for event, _ in new)
    if cursor.at_ns is not None and cursor.at_ns > newest:
        return Cursor(cursor.at_ns, cursor.seen_at_last, last_status)
    at_newest = frozenset(key for event, key in new if event.created_at_ns == newest)
    if cursor.at_ns == newest:
        at_newest |= cursor.seen_at_last
    return Cursor(newest, at_newest, last_status)
