"""The delivery state machine of the outbox, and which notifier gets which transition.

Pure: the store persists these values, the dispatcher acts on them, and neither
decides anything that is decided here.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from ftwatch.model import Transition
from ftwatch.statuses import filter_matches

__all__ = [
    "Delivery",
    "DeliveryState",
    "Failure",
    "RetryPolicy",
    "Route",
    "after_failure",
    "after_success",
    "backoff_delay",
    "fan_out",
]


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Route:
    """A notifier as the outbox knows it: a stable key and its filters."""

    key: str
    statuses: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()

    def wants(self, transition: Transition) -> bool:
        """Its filters: ``statuses`` holds what :func:`~ftwatch.statuses.status_filter` made
        of the provider words and normalized states configured."""
        if self.statuses and not filter_matches(self.statuses, transition.status, transition.state):
            return False
        return not (self.models and transition.model_id not in self.models)


def fan_out(transitions: Iterable[Transition], routes: Iterable[Route]) -> list[tuple[str, str]]:
    """Which notifier gets which transition: (transition id, notifier key) for every
    route that wants it, transitions in their order. Decided once, here, and handed
    to the store to queue in the cycle's transaction."""
    route_list = list(routes)
    return [(t.id, route.key) for t in transitions for route in route_list if route.wants(t)]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, and when to give up."""

    initial_s: float = 1.0
    max_s: float = 300.0
    give_up_after_s: float = 86_400.0


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one attempt failed. ``permanent``: retrying cannot help (a 4xx, say)."""

    detail: str
    permanent: bool = False
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One transition on its way to one notifier.

    Times are Unix seconds: they outlive the process, so no monotonic clock will do.
    """

    transition_id: str
    notifier: str
    created_at: float
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None


def backoff_delay(attempts: int, policy: RetryPolicy, uniform: Callable[[], float] = random.random) -> float:
    """Delay before attempt number ``attempts + 1``: uniform between half the initial
    delay and an exponential cap.

    Not full jitter (which starts at zero): the floor keeps a failing receiver from
    being hit again at once, and the spread still keeps many transitions (and many
    ftwatch instances) from retrying in lockstep after a receiver comes back.
    """
    cap = min(policy.max_s, policy.initial_s * 2.0 ** max(attempts - 1, 0))
    return policy.initial_s / 2 + uniform() * max(cap - policy.initial_s / 2, 0.0)


def after_success(delivery: Delivery) -> Delivery:
    return replace(delivery, state=DeliveryState.DELIVERED, attempts=delivery.attempts + 1, last_error=None)


def after_failure(
    delivery: Delivery,
    failure: Failure,
    now: float,
    policy: RetryPolicy,
    uniform: Callable[[], float] = random.random,
) -> Delivery:
    """The delivery after a failed attempt: retried later, or a dead letter."""
    attempts = delivery.attempts + 1
    if failure.permanent or now - delivery.created_at >= policy.give_up_after_s:
        return replace(delivery, state=DeliveryState.DEAD, attempts=attempts, last_error=failure.detail)
    delay = backoff_delay(attempts, policy, uniform)
    if failure.retry_after_s is not None:
        # The receiver said when: never sooner than that.
        delay = max(delay, failure.retry_after_s)
    return replace(delivery, attempts=attempts, next_attempt_at=now + delay, last_error=failure.detail)
