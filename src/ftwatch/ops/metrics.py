"""Prometheus metrics of one daemon, in a registry of its own.

Names follow Prometheus conventions: ``ftwatch_`` prefix, base units, ``_total``
counters. A model id is a label only of the two progress gauges, and only while its
job runs (its series are removed when it ends): thousands of finished models are
never thousands of series.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import assert_never

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ftwatch.clock import SYSTEM_CLOCK, Clock
from ftwatch.cycle import CycleFindings, CycleReport, Failed, FailedAt, Polled, Standby
from ftwatch.dispatch import DeliveryAttempt
from ftwatch.model import Progress
from ftwatch.pollers import SOURCE_MARK
from ftwatch.sources.base import RequestDone

__all__ = ["Metrics"]

_API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CYCLE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    def __init__(self, version: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        self._polling(self.registry)
        self._delivery(self.registry)
        self._state(self.registry)
        self._jobs(self.registry)
        Info("ftwatch_build", "The running ftwatch.", registry=self.registry).info({"version": version})

    def _polling(self, r: CollectorRegistry) -> None:
        """The cycles, the API requests, what they found, and the pushes that asked for them."""
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
        self.cycle_seconds = Histogram(
            "ftwatch_poll_cycle_seconds", "Duration of poll cycles.", buckets=_CYCLE_BUCKETS, registry=r
        )
        self.model_failures = Counter(
            "ftwatch_model_failures",
            "Models whose read failed in a cycle (the others went on), by reason.",
            ["reason"],
            registry=r,
        )
        self.source_up = Gauge(
            "ftwatch_source_up",
            "1 when the last cycle polled this source, 0 when it failed (the others went on).",
            ["source"],
            registry=r,
        )
        self.pushes = Counter(
            "ftwatch_webhook_pushes",
            "Webhooks received from a provider, by source and outcome (ok, rejected, replayed, ignored).",
            ["source", "outcome"],
            registry=r,
        )
        self.last_success = Gauge(
            "ftwatch_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll cycle.",
            registry=r,
        )
        self.poll_interval = Gauge(
            "ftwatch_poll_interval_seconds",
            "The configured poll interval (alerting rules count missed polls in it).",
            registry=r,
        )
        self.stall_alerts = Counter(
            "ftwatch_stall_alerts", "Stall alerts queued, by the status the model stays in.", ["status"], registry=r
        )

    def _jobs(self, r: CollectorRegistry) -> None:
        """How far each running job is, where its provider tells."""
        self.jobs = RunningJobsCollector()
        r.register(self.jobs)

    def _delivery(self, r: CollectorRegistry) -> None:
        """The outbox and the delivery attempts."""
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
        self.outbox_pending = Gauge(
            "ftwatch_outbox_pending", "Deliveries waiting in the outbox, all notifiers together.", registry=r
        )
        self.outbox_orphaned = Gauge(
            "ftwatch_outbox_orphaned",
            "Deliveries waiting for a notifier no longer configured: kept until it comes back.",
            registry=r,
        )
        self.oldest_pending = Gauge(
            "ftwatch_outbox_oldest_pending_seconds",
            "How long the oldest pending delivery has waited (0 when none).",
            registry=r,
        )

    def _state(self, r: CollectorRegistry) -> None:
        """The state and the leadership of several replicas."""
        self.store_errors = Counter(
            "ftwatch_store_errors", "Failed reads and writes of the state, by operation.", ["operation"], registry=r
        )
        self.leader = Gauge("ftwatch_leader", "1 while this process leads the polling, else 0.", registry=r)
        self.config_differs = Gauge(
            "ftwatch_config_differs_from_leader",
            "1 while this replica's sources or notifiers differ from the leading replica's (shared store).",
            registry=r,
        )
        self.leader_term = Gauge("ftwatch_leader_term", "The polling lease's term this process last led.", registry=r)

    # --- what it subscribes to ------------------------------------------------------

    def request_done(self, request: RequestDone) -> None:
        self.api_requests.labels(request.endpoint, request.code).inc()
        self.api_seconds.labels(request.endpoint).observe(request.seconds)

    def delivery_attempt(self, attempt: DeliveryAttempt) -> None:
        self.notifications.labels(attempt.notifier, attempt.outcome).inc()
        self.notification_seconds.labels(attempt.notifier).observe(attempt.seconds)

    def store_error(self, operation: str) -> None:
        self.store_errors.labels(operation).inc()

    def cycle_done(self, report: CycleReport) -> None:
        match report:
            case Standby():
                self.polls.labels("standby").inc()
                self.source_up.clear()  # a standby polls nothing: the leader's figures count
                self.jobs.running = {}
            case Failed(failed_at=failed_at):
                self.polls.labels("error").inc()
                if failed_at is FailedAt.STORE:
                    self.store_errors.labels("commit_cycle").inc()
            case Polled(findings=findings):
                self.polls.labels("ok").inc()
                self.cycle_seconds.observe(report.seconds)
                self.last_success.set(self._clock.now())
                self._found(findings)
            case unexpected:
                assert_never(unexpected)

    def _found(self, findings: CycleFindings) -> None:
        for transition in findings.transitions:
            if transition.stalled:
                self.stall_alerts.labels(transition.status).inc()
            else:
                self.transitions.labels(transition.status).inc()
        for name, up in findings.sources.items():
            self.source_up.labels(name).set(1 if up else 0)
        for key, error in findings.failed.items():
            if key.startswith(SOURCE_MARK):
                continue  # a whole source, in ftwatch_source_up
            self.model_failures.labels("unreadable" if "unreadable" in error else "api").inc()
        self.jobs.running = findings.progress

    def outbox(self, pending: dict[str, int], configured: set[str]) -> None:
        """Pending deliveries per notifier key: those of configured notifiers are
        pending, the others orphaned (a notifier removed by a reload)."""
        self.outbox_pending.set(sum(n for key, n in pending.items() if key in configured))
        self.outbox_orphaned.set(sum(n for key, n in pending.items() if key not in configured))


_JOB_GAUGES = (
    ("ftwatch_job_progress_ratio", "How far a running job is, 0 to 1 (running jobs only)."),
    ("ftwatch_job_train_loss", "A running job's latest training loss (running jobs only)."),
)


def _job_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    ratio, loss = (GaugeMetricFamily(name, what, labels=("source", "model_id")) for name, what in _JOB_GAUGES)
    return ratio, loss


class RunningJobsCollector(Collector):
    """The two per-job gauges, made when Prometheus scrapes from the last cycle's
    running jobs, not set every cycle: 2,000 running jobs would be 4,000 sets a
    cycle for a scrape a minute. A job that ends leaves the last cycle's running
    jobs, so its series go with it."""

    def __init__(self) -> None:
        #: source -> model id -> progress (the last cycle's; empty on standby).
        self.running: Mapping[str, Mapping[str, Progress]] = {}

    def describe(self) -> Iterator[Metric]:
        yield from _job_families()

    def collect(self) -> Iterator[Metric]:
        ratio, loss = _job_families()
        for source, jobs in self.running.items():
            for model_id, told in jobs.items():
                if (done := told.ratio) is not None:
                    ratio.add_metric((source, model_id), done)
                if told.train_loss is not None:
                    loss.add_metric((source, model_id), told.train_loss)
        yield ratio
        yield loss
