"""What changed for a provider whose list shows each job's status as a snapshot.

Pure and synchronous, like :mod:`ftwatch.diff`, for OpenAI's and Bedrock's jobs. The
list says where a job is now; what it passed through between two polls comes from
the job's status history where the provider keeps one (OpenAI's event messages, with
their times), and the time of the current status from the job itself where it says
(``finished_at``, ``lastModifiedTime``), else the moment it was noticed.

A change is reported once: the cursor remembers the status the last committed cycle
saw, and a cycle that sees the same status again reports nothing, whatever new
history arrived. Ids are stable per provider, job, step and (when the provider
dates it) time, so the same change read twice (a crash before the commit) has the
same id, and two providers' jobs never share one. A provider that dates in whole
seconds cannot tell two stays of one status within the same second apart: the later
is taken.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ftwatch.model import Event, ModelInfo, Progress, Transition, format_timestamp
from ftwatch.progress import advance, on_top, settle, summary_of
from ftwatch.state import Cursor, CycleDiff, DiffContext, Fetched, ModelState
from ftwatch.statuses import Vocabulary
from ftwatch.textsafe import failure_text

__all__ = ["SnapshotChange", "baseline_cursor", "diff_snapshot", "diff_snapshots", "snapshot_transition_id"]


def snapshot_transition_id(provider: str, model_id: str, previous: str | None, status: str, at_ns: int | None) -> str:
    """The same step of the same job of the same provider: the same id."""
    raw = f"{provider}\x1f{model_id}\x1f{previous or ''}\x1f{status}\x1f{'' if at_ns is None else at_ns}"
    return "ftw_" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SnapshotChange:
    """Where a job is: the cursor to commit and the transitions that got it there."""

    cursor: Cursor
    transitions: list[Transition]


def baseline_cursor(info: ModelInfo) -> Cursor:
    """A job taken as history: its status now, since when the provider says. A job
    that says no time has a cursor without one (never ours: the provider's clock is
    not ours, and its event times are compared with the cursor)."""
    return Cursor(info.updated_at_ns, frozenset(), info.status)


def _steps(history: list[Event]) -> list[Event]:
    """The dated history, oldest first, each status once per stay (its first event).
    Providers date in whole seconds: events of one second keep the order given
    (oldest first), which is the order they happened in."""
    dated = sorted((e for e in history if e.created_at_ns is not None), key=lambda e: e.created_at_ns or 0)
    steps: list[Event] = []
    for event in dated:
        if not steps or steps[-1].status != event.status:
            steps.append(event)
    return steps


#: Providers date steps in whole seconds (OpenAI), ftwatch its cursors finer: a
#: step up to this much before the cursor's time may still have come after it.
_SECOND = 1_000_000_000


def _after(steps: list[Event], previous: str | None, at_ns: int | None) -> list[Event]:
    """The steps since the cursor (whose time is the provider's, like the steps').
    Those later than its time, and of the second up to it (a whole-second stamp
    cannot say whether they came before or after) those after the step into
    ``previous``; none of that second when it is not among them (the cursor was
    taken after them). Without a time, those after the last step into ``previous``."""
    if at_ns is None:
        entered = [i for i, step in enumerate(steps) if step.status == previous]
        return steps[entered[-1] + 1 :] if entered else steps
    window = [s for s in steps if at_ns - _SECOND < (s.created_at_ns or 0) <= at_ns]
    later = [s for s in steps if (s.created_at_ns or 0) > at_ns]
    entered = [i for i, step in enumerate(window) if step.status == previous]
    return (window[entered[-1] + 1 :] if entered else []) + later


def diff_snapshot(
    model_id: str,
    info: ModelInfo,
    cursor: Cursor | None,
    history: list[Event],
    context: DiffContext,
    progress: Progress | None = None,
) -> SnapshotChange:
    """The transitions from ``cursor`` (``None``: a job never seen, all new) to the
    status ``info`` shows, through the steps ``history`` tells of in between, each
    with what ``progress`` (how far the job is now) tells of it (:func:`_progress_told`).

    The window's ``catch_up_from`` for a job never seen, in a baseline: only the
    steps from then on are new (a start on empty state that catches up); the one
    before is their previous status.
    Steps the history shows beyond the snapshot (it is fresher than the list) wait
    for the list to catch up: they are reported by a later cycle, once.
    """
    provider, source, words = context.identity.provider, context.identity.name, context.vocabulary
    detected_at_ns = context.window.detected_at_ns
    catch_up_from_ns = context.window.catch_up_from if cursor is None and context.window.baseline else None
    now_status = info.status
    if cursor is not None and cursor.last_status == now_status:
        return SnapshotChange(cursor, [])
    # The failure's reason wherever the history gives it for the status now (a
    # detail read without a usable time, or dated before the cursor, still says it).
    reason = next((e.message for e in reversed(history) if e.status == now_status and e.message), None) or info.failure
    previous, steps = _steps_to_now(info, cursor, history, catch_up_from_ns, reason)
    detected_at = format_timestamp(detected_at_ns, digits=3)
    transitions: list[Transition] = []
    at_ns = cursor.at_ns if cursor is not None else None
    for step in steps:
        if step.status == previous:
            continue
        when = step.created_at_ns
        is_now = step.status == now_status
        state = words.state_of(step.status)
        # Bounded, one line, no controls: it goes into every body, Slack and the outbox.
        failure = failure_text(step.message or (reason if is_now else None)) if state == "failed" else None
        transitions.append(
            Transition(
                id=snapshot_transition_id(provider, model_id, previous, step.status, when),
                model_id=model_id,
                model_name=info.name,
                status=step.status,
                previous_status=previous,
                occurred_at=format_timestamp(when) if when is not None else detected_at,
                user_id=None,
                detected_at=detected_at,
                provider=provider,
                source=source,
                fine_tuned_model=info.fine_tuned_model if is_now and state == "ready" else None,
                failure_message=failure,
                **_progress_told(info, step, progress, words, is_now=is_now, detected_at_ns=detected_at_ns),
            ).in_words_of(provider, source, state)
        )
        previous = step.status
        if when is not None:
            at_ns = when
    return SnapshotChange(_cursor_after(cursor, history, at_ns, info), transitions)


def _progress_told(
    info: ModelInfo, step: Event, progress: Progress | None, words: Vocabulary, *, is_now: bool, detected_at_ns: int
) -> dict[str, Any]:
    """A transition into a terminal state carries what the job came to (its
    ``summary``); one into the status now, how far it is (its ``progress``)."""
    if words.is_terminal(step.status):
        ended_ns = step.created_at_ns if step.created_at_ns is not None else detected_at_ns
        return {"summary": summary_of(advance(progress, step.progress), info, ended_ns)}
    return {"progress": progress if is_now else None}


def _steps_to_now(
    info: ModelInfo, cursor: Cursor | None, history: list[Event], catch_up_from_ns: int | None, reason: str | None
) -> tuple[str | None, list[Event]]:
    """The status before the new steps, and the new steps up to the status now (the
    history may run ahead of the list; the status now is a step of its own when the
    history does not tell of it)."""
    now_status = info.status
    steps = _steps(history)
    previous = cursor.last_status if cursor is not None else None
    if cursor is not None:
        steps = _after(steps, previous, cursor.at_ns)
    elif catch_up_from_ns is not None:
        before = [s for s in steps if (s.created_at_ns or 0) < catch_up_from_ns]
        previous = before[-1].status if before else None
        steps = steps[len(before) :]
    if now_status in (s.status for s in steps):
        last = max(i for i, s in enumerate(steps) if s.status == now_status)
        return previous, steps[: last + 1]
    at = info.updated_at_ns
    newest = max((s.created_at_ns or 0 for s in steps), default=0)
    dated = at is not None and at >= newest
    return previous, [*steps, Event(now_status, at if dated else None, message=reason)]


def _cursor_after(cursor: Cursor | None, history: list[Event], at_ns: int | None, info: ModelInfo) -> Cursor:
    """The newest time the provider gave: the next read compares its steps with it."""
    times = [e.created_at_ns for e in history if e.created_at_ns is not None]
    times += [t for t in (at_ns, info.updated_at_ns) if t is not None]
    since = max(times) if times else None
    if cursor is not None and cursor.at_ns is not None:
        # A cursor never moves back (the stores refuse it).
        since = cursor.at_ns if since is None else max(since, cursor.at_ns)
    return Cursor(since, frozenset(), info.status)


def diff_snapshots(state: Mapping[str, ModelState], fetched: Mapping[str, Fetched], context: DiffContext) -> CycleDiff:
    """A snapshot source's cycle: each job's status against the last one seen."""
    changed: dict[str, ModelState] = {}
    progressed: dict[str, Progress] = {}
    moved = context.progress
    transitions: list[Transition] = []
    history_read = 0
    for model_id, item in fetched.items():
        old = state.get(model_id)
        info = item.info
        kept = moved.get(model_id) or (old.progress if old is not None else None)
        progress = _progress_now(kept, item, context.window.detected_at_ns)
        if item.lazy_baseline:
            noticed = context.window.detected_at_ns
            changed[model_id] = ModelState(
                baseline_cursor(info), info.name, info.status, info.updated_at, noticed_ns=noticed, progress=progress
            )
            continue
        if item.events is None:  # unchanged, not read
            if old is not None and old.name != info.name:
                changed[model_id] = replace(old, name=info.name, progress=progress)
            elif old is not None and progress is not None and progress is not kept:
                # Only how far it is: kept in memory, written with the row's next change.
                progressed[model_id] = progress
            continue
        history_read += len(item.events)
        cursor = old.cursor if old is not None else None
        found = diff_snapshot(model_id, info, cursor, item.events, context, progress)
        stay_goes_on = old is not None and found.cursor.last_status == old.cursor.last_status
        changed[model_id] = ModelState(
            found.cursor,
            info.name,
            info.status,
            info.updated_at,
            stalled=old.stalled if old is not None and stay_goes_on else None,
            noticed_ns=old.noticed_ns if old is not None and stay_goes_on else context.window.detected_at_ns,
            progress=progress,
        )
        transitions.extend(found.transitions)
    return CycleDiff(changed, transitions, history_read, progressed=progressed)


def _progress_now(kept: Progress | None, item: Fetched, now_ns: int) -> Progress | None:
    """What is known of the job's progress after this cycle: what was kept, then what
    its history, its list entry and a read of its newest progress told, in that order."""
    piece, read = item.info.progress, item.progress
    if not item.events and read is None:  # the common case: the list's word alone
        return kept if piece is None else on_top(kept, piece, now_ns)
    told = [p for p in (*(event.progress for event in item.events or ()), piece, read) if p]
    if not told:
        return kept
    return settle(advance(kept, *told, now_ns=now_ns), now_ns, kept.eta_ns if kept is not None else None)
