"""Rows for the state's tests: a transition made up for them, and a notifier's
oldest pending delivery, looked at without sending it."""

from __future__ import annotations

from ftwatch.model import Transition
from ftwatch.outbox import Delivery
from ftwatch.store.base import Busy, Outbox


def head_of(store: Outbox, notifier: str) -> tuple[Delivery, Transition] | None:
    """Claimed and given back at once, as a dispatcher that finds it not due would."""
    claim = store.claim_next(notifier)
    if claim is None or isinstance(claim, Busy):
        return None
    head = claim.head
    claim.release()
    return head


def transition(
    n: int, *, model: str = "ft-1", status: str = "STATUS_READY", previous: str | None = None, prefix: str = "t"
) -> Transition:
    """The ``n``th of a model's made-up transitions: its seconds are ``n``, its id
    ``prefix`` and ``n``."""
    at = f"2026-01-01T00:00:{n:02d}.000000000Z"
    return Transition(f"{prefix}{n}", model, "m", status, previous, at, None, at)
