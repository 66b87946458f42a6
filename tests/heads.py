"""A notifier's oldest pending delivery, looked at without sending it: claimed and
given back at once, as a dispatcher that finds it not due yet would."""

from __future__ import annotations

from ftwatch.model import Transition
from ftwatch.outbox import Delivery
from ftwatch.store.base import Busy, Outbox


def head_of(store: Outbox, notifier: str) -> tuple[Delivery, Transition] | None:
    claim = store.claim_next(notifier)
    if claim is None or isinstance(claim, Busy):
        return None
    head = claim.head
    claim.release()
    return head
