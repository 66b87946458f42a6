"""Stall alerts: a model that stays in one state longer than ``[stall] after`` says.
Pure: the poller asks after each cycle, and commits what this returns with it.

One alert per stay. The stay is remembered in the model's row (``stalled``), written
in the same transaction as the alert, so a restart does not alert again; the next
transition starts a new stay, which may alert again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from ftwatch.compat import LEGACY_PROVIDER, stall_subject
from ftwatch.model import STALLED, Transition, format_timestamp
from ftwatch.state import DiffContext, ModelState, SourceIdentity

__all__ = ["check_stall", "stall_alerts", "stay_key"]


def stay_key(status: str, since_ns: int) -> str:
    return f"{status}@{since_ns}"


def _same_stay(remembered: str | None, status: str, since_ns: int, slack_ns: int) -> bool:
    """A baseline from the list knows ``since`` from ``updated_at``, a later read from
    the event itself: a few seconds apart, the same stay."""
    if remembered is None:
        return False
    old_status, _, old_since = remembered.rpartition("@")
    return old_status == status and old_since.isdigit() and abs(int(old_since) - since_ns) <= slack_ns


#: The one source of a state from before sources had names (the legacy ``[cohere]``).
_LEGACY_SOURCE = SourceIdentity(LEGACY_PROVIDER, LEGACY_PROVIDER, "")


def check_stall(
    model_id: str,
    state: ModelState,
    threshold_s: Callable[[str], float | None],
    now_ns: int,
    *,
    slack_ns: int = 2_000_000_000,
    identity: SourceIdentity = _LEGACY_SOURCE,
) -> tuple[Transition, ModelState] | None:
    """The alert and the model's state remembering it, if the model has stayed in its
    status past its threshold and no alert was sent for this stay yet."""
    status = state.cursor.last_status
    since_ns = state.cursor.at_ns if state.cursor.at_ns is not None else state.noticed_ns
    if status is None or since_ns is None:
        return None
    limit = threshold_s(status)
    if limit is None or now_ns - since_ns < limit * 1e9:
        return None
    if _same_stay(state.stalled, status, since_ns, slack_ns):
        return None
    who = stall_subject(identity.provider, model_id)
    digest = hashlib.sha256(f"stall\x1f{who}\x1f{status}\x1f{since_ns}".encode()).hexdigest()[:32]
    detected_at = format_timestamp(now_ns, digits=3)
    alert = Transition.of_ftwatch(
        "ftw_stall_" + digest,
        model_id,
        state.name,
        status,
        detected_at,
        type=STALLED,
        since=format_timestamp(since_ns),
        stalled_for_s=round((now_ns - since_ns) / 1e9, 3),
        provider=identity.provider,
        source=identity.name,
    )
    return alert, replace(state, stalled=stay_key(status, since_ns))


def stall_alerts(
    state: Mapping[str, ModelState],
    changed: dict[str, ModelState],
    seen: Iterable[str],
    threshold_s: Callable[[str | None, str], float | None],
    context: DiffContext,
) -> list[Transition]:
    """The stall alerts of the models a cycle saw (their state as it will be
    committed); each model's row in ``changed`` remembers its alert.
    ``threshold_s(status, state)``: how long a status may last."""
    vocabulary, identity, now_ns = context.vocabulary, context.identity, context.window.detected_at_ns
    # A stay's start read again may move by the clock skew (and a second of rounding):
    # still the same stay, not a new one to alert on.
    slack_ns = context.window.clock_skew_ns + 10**9
    alerts = []
    for model_id in seen:
        current = changed.get(model_id) or state.get(model_id)
        if current is None:
            continue
        found = check_stall(
            model_id,
            current,
            lambda status: threshold_s(status, vocabulary.state_of(status)),
            now_ns,
            slack_ns=slack_ns,
            identity=identity,
        )
        if found is not None:
            alert, changed[model_id] = found
            alerts.append(alert.in_words_of(identity.provider, identity.name, vocabulary.state_of(alert.status)))
    return alerts
