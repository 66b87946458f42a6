"""The outbox: any sequence of new events, polls, failures, crashes and restarts ends
with every transition delivered once per notifier, oldest first."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ftwatch.diff import diff_events
from ftwatch.model import Event, Transition
from ftwatch.outbox import (
    Delivery,
    DeliveryState,
    Failure,
    RetryPolicy,
    Route,
    after_failure,
    after_success,
    backoff_delay,
)
from ftwatch.state import ReadWindow
from ftwatch.store import ModelState
from ftwatch.store.base import CycleCommit
from ftwatch.store.sqlite import SqliteStore as Store

from .rows import head_of

NOTIFIERS = ("hook", "slack")
POLICY = RetryPolicy(initial_s=1.0, max_s=60.0, give_up_after_s=1e9)


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "state.db"
        self.store = Store(self.path)
        self.history: list[Event] = []
        self.clock = 1_000
        self.received: dict[str, list[Transition]] = {n: [] for n in NOTIFIERS}
        self.baselined = False

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    @rule(
        statuses=st.lists(st.sampled_from(["STATUS_FINETUNING", "STATUS_READY", "STATUS_FAILED"]), max_size=3),
        same_instant=st.booleans(),
    )
    def new_events(self, statuses: list[str], same_instant: bool) -> None:
        for status in statuses:
            self.clock += 0 if same_instant else 1
            # Numbered, so each event is a change of status (a repeat is no transition).
            self.history.append(Event(f"{status}_{len(self.history)}", self.clock))

    @rule()
    def poll(self) -> None:
        models = self.store.load_models()
        old = models.get("ft-1")
        cursor, new = diff_events(
            "ft-1",
            "m",
            old.cursor if old else None,
            list(self.history),
            ReadWindow(baseline=not self.baselined, detected_at_ns=self.clock),
        )
        self.store.commit_cycle(
            CycleCommit.of({"ft-1": ModelState(cursor, "m")}, new, [Route(n) for n in NOTIFIERS], now=0.0)
        )
        if not self.baselined:
            self.baseline_count = len(self.history)
        self.baselined = True

    @rule(notifier=st.sampled_from(NOTIFIERS), outcome=st.sampled_from(["ok", "fail", "crash_after_send"]))
    def deliver(self, notifier: str, outcome: str) -> None:
        head = head_of(self.store, notifier)
        if head is None:
            return
        delivery, transition = head
        if outcome == "fail":
            self.store.save_delivery(after_failure(delivery, Failure("HTTP 503"), now=0.0, policy=POLICY))
            return
        self.received[notifier].append(transition)
        if outcome == "ok":
            self.store.save_delivery(after_success(delivery))
        # crash_after_send: the receiver has it, the store never heard back.

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = Store(self.path)

    @invariant()
    def nothing_is_delivered_out_of_order(self) -> None:
        for got in self.received.values():
            unique = list({t.id: t for t in got}.values())
            assert [t.occurred_at for t in unique] == sorted(t.occurred_at for t in unique)

    @precondition(lambda self: self.baselined)
    @rule()
    def drain_and_check(self) -> None:
        self.poll()
        for notifier in NOTIFIERS:
            while (head := head_of(self.store, notifier)) is not None:
                self.received[notifier].append(head[1])
                self.store.save_delivery(after_success(head[0]))
        expected = len(self.history) - self.baseline_count
        for got in self.received.values():
            by_id: dict[str, Transition] = {}
            for t in got:
                # A re-send after a crash is the same transition: same id, same content.
                assert by_id.setdefault(t.id, t) == t
            assert len(by_id) == expected


TestOutbox = OutboxMachine.TestCase
TestOutbox.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_backoff_grows_and_stays_within_its_cap() -> None:
    """Backoff grows with attempts and never exceeds its cap."""
    policy = RetryPolicy(initial_s=1.0, max_s=30.0)
    assert backoff_delay(1, policy, lambda: 0.0) == 0.5
    assert backoff_delay(1, policy, lambda: 1.0) == 1.0
    assert backoff_delay(4, policy, lambda: 1.0) == 8.0
    assert backoff_delay(50, policy, lambda: 1.0) == 30.0


def test_retry_after_is_never_undercut() -> None:
    """A receiver's Retry-After is never undercut by the backoff."""
    d = Delivery("t", "hook", created_at=0.0)
    later = after_failure(d, Failure("429", retry_after_s=120.0), now=10.0, policy=RetryPolicy(), uniform=lambda: 0.0)
    assert later.next_attempt_at == 130.0
    assert later.state is DeliveryState.PENDING


def test_permanent_failures_and_old_ones_become_dead_letters() -> None:
    """A permanent failure, or one past give_up_after_s, is a dead letter."""
    d = Delivery("t", "hook", created_at=0.0)
    assert after_failure(d, Failure("HTTP 404", permanent=True), 1.0, RetryPolicy()).state is DeliveryState.DEAD
    old = after_failure(d, Failure("HTTP 503"), now=90_000.0, policy=RetryPolicy(give_up_after_s=86_400.0))
    assert old.state is DeliveryState.DEAD
    assert old.last_error == "HTTP 503"
