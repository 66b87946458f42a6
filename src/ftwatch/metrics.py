"""Prometheus metrics of one daemon, in a registry of its own.

Names follow Prometheus conventions: ``ftwatch_`` prefix, base units, ``_total``
counters. No model id is ever a label: thousands of models would be thousands of series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

__all__ = ["Metrics"]

_API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CYCLE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("ftwatch_polls", "Poll cycles by outcome (ok, error).", ["outcome"], registry=r)
        self.api_requests = Counter(
            "ftwatch_api_requests", "Requests to the fine-tuning API.", ["endpoint", "code"], registry=r
        )
        self.api_seconds = Histogram(
            "ftwatch_api_request_seconds", "Duration of API requests.", ["endpoint"], buckets=_API_BUCKETS, registry=r
        )
        self.transitions = Counter(
            "ftwatch_transitions", "Transitions detected, by new status.", ["status"], registry=r
        )
        self.notifications = Counter(
            "ftwatch_notifications",
            "Delivery attempts by notifier and outcome (ok, retry, dead).",
            ["notifier", "outcome"],
            registry=r,
        )
        self.notification_seconds = Histogram(
            "ftwatch_notification_seconds",
            "Duration of delivery attempts.",
            ["notifier"],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.cycle_seconds = Histogram(
            "ftwatch_poll_cycle_seconds", "Duration of poll cycles.", buckets=_CYCLE_BUCKETS, registry=r
        )
        self.outbox_pending = Gauge(
            "ftwatch_outbox_pending", "Deliveries waiting in the outbox, all notifiers together.", registry=r
        )
        self.outbox_orphaned = Gauge(
            "ftwatch_outbox_orphaned",
            "Deliveries waiting for a notifier no longer configured: kept until it comes back.",
            registry=r,
        )
        self.model_failures = Counter(
            "ftwatch_model_failures",
            "Models whose read failed in a cycle (the others went on), by reason.",
            ["reason"],
            registry=r,
        )
        self.store_errors = Counter(
            "ftwatch_store_errors", "Failed reads and writes of the state, by operation.", ["operation"], registry=r
        )
        self.last_success = Gauge(
            "ftwatch_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll cycle.",
            registry=r,
        )
        Info("ftwatch_build", "The running ftwatch.", registry=r).info({"version": version})

    def api_request(self, endpoint: str, code: str, seconds: float) -> None:
        self.api_requests.labels(endpoint, code).inc()
        self.api_seconds.labels(endpoint).observe(seconds)

    def notification(self, notifier: str, outcome: str, seconds: float) -> None:
        self.notifications.labels(notifier, outcome).inc()
        self.notification_seconds.labels(notifier).observe(seconds)

    def outbox(self, pending: dict[str, int], configured: set[str]) -> None:
        """Pending deliveries per notifier key: those of configured notifiers are
        pending, the others orphaned (a notifier removed by a reload)."""
        self.outbox_pending.set(sum(n for key, n in pending.items() if key in configured))
        self.outbox_orphaned.set(sum(n for key, n in pending.items() if key not in configured))
