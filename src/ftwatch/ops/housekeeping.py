"""What the daemon keeps doing beside polling and delivering: retention, the outbox
gauges, and (several replicas) comparing what each watches.

Each is a loop of its own in the daemon's task group, reading the state from a
worker thread, so a scrape or a locked file never stalls the event loop. A failure
is logged, counted (``ftwatch_store_errors_total``) and tried again later.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import anyio
import structlog

from ftwatch.errors import StoreError
from ftwatch.ops.board import StatusBoard
from ftwatch.ops.observers import Observers
from ftwatch.outbox import DeliveryState
from ftwatch.store.base import OutboxAdmin, ReplicaRegistry, ReplicaView

__all__ = ["REPLICA_EVERY_S", "RETENTION_EVERY_S", "RETENTION_FIRST_S", "Housekeeping"]

log = structlog.get_logger("ftwatch.housekeeping")

#: When the retention first runs after start, and how often after that.
RETENTION_FIRST_S = 1.0
RETENTION_EVERY_S = 3_600.0
#: How often a replica on a shared store publishes and compares its fingerprint.
REPLICA_EVERY_S = 5.0
#: How often the outbox gauges are read.
GAUGES_EVERY_S = 2.0


class Housekeeping:
    """The daemon's background chores over one state (see the module).

    ``leading()``: whether this process leads (retention runs on the leader only);
    ``notifiers()``: the keys of the notifiers configured now (a reload changes them);
    ``board``: the status page's data, where the page is served (it alone needs the
    dead deliveries counted).
    """

    def __init__(
        self,
        store: OutboxAdmin,
        observers: Observers,
        *,
        leading: Callable[[], bool],
        notifiers: Callable[[], Collection[str]],
        board: StatusBoard | None = None,
    ) -> None:
        self.store = store
        self.metrics = observers.metrics
        self.health = observers.health
        self.clock = observers.clock
        self.board = board
        self.leading = leading
        self.notifiers = notifiers

    async def retention(self, keep_s: float) -> None:
        """Remove delivered rows older than ``keep_s``: soon after start, then hourly
        (on a shared store, by the leader only), so the state stops growing."""
        await anyio.sleep(RETENTION_FIRST_S)
        while True:
            if self.leading():
                try:
                    removed = await anyio.to_thread.run_sync(self.store.purge, self.clock.now() - keep_s)
                except StoreError as exc:
                    self.metrics.store_error("purge")
                    log.warning("store.failed", operation="purge", error=str(exc), note="tried again in an hour")
                else:
                    if removed:
                        log.info("outbox.purged", removed=removed, retention_s=keep_s)
            await anyio.sleep(RETENTION_EVERY_S)

    async def outbox_gauges(self) -> None:
        """Keep the outbox gauges fresh: a scrape never touches the state, so a
        locked file cannot stall ``/metrics``. A notifier removed by a reload whose
        queue is still there is named once (orphaned: kept, sent if it comes back)."""
        warned: set[str] = set()
        while True:
            try:
                pending = await anyio.to_thread.run_sync(self.store.count_deliveries)
                dead = (
                    await anyio.to_thread.run_sync(self.store.count_deliveries, DeliveryState.DEAD)
                    if self.board is not None
                    else {}
                )
                oldest = await anyio.to_thread.run_sync(self.store.oldest_pending_age, self.clock.now())
            except StoreError as exc:
                self.metrics.store_error("count_deliveries")
                log.warning("store.failed", operation="count_deliveries", error=str(exc))
            else:
                configured = set(self.notifiers())
                self.metrics.outbox(pending, configured)
                if self.board is not None:
                    self.board.outbox(pending, dead, configured)
                self.metrics.oldest_pending.set(oldest or 0.0)
                orphans = {key: n for key, n in pending.items() if key not in configured and n}
                for key in orphans.keys() - warned:
                    log.warning(
                        "outbox.orphaned",
                        notifier=key,
                        pending=orphans[key],
                        note="no notifier with this key is configured: kept, sent if it comes back",
                    )
                warned = set(orphans)
            await anyio.sleep(GAUGES_EVERY_S)

    async def compare_replicas(self, registry: ReplicaRegistry, holder: str, fingerprint: Callable[[], str]) -> None:
        """Publish what this replica watches every few seconds, and compare it with
        the leader's: replicas that disagree (a rolling deploy adding a source) are a
        warning, a metric and a line in ``/readyz``, not silence."""
        told: str | None = None
        while True:
            own = fingerprint()
            try:
                now = self.clock.now()
                view = await anyio.to_thread.run_sync(registry.publish_fingerprint, holder, own, now)
            except StoreError as exc:
                self.metrics.store_error("publish_fingerprint")
                log.debug("replica.publish_failed", error=str(exc))
            else:
                told = self._compared(view, own, told)
            await anyio.sleep(REPLICA_EVERY_S)

    def _compared(self, view: ReplicaView, own: str, told: str | None) -> str | None:
        """Say what the view shows (a difference once per leader fingerprint); the
        fingerprint told about now."""
        theirs = view.fingerprints.get(view.leader) if view.leader else None
        differs = theirs is not None and theirs != own
        self.metrics.config_differs.set(1 if differs else 0)
        if not differs:
            self.health.config = f"same as the leader's ({own})" if theirs else f"{own} (no leader seen)"
            if told is not None:
                log.info("replica.config_matches", fingerprint=own)
            return None
        self.health.config = f"differs from the leader's: this replica {own}, the leader {theirs}"
        if told != theirs:
            log.warning(
                "replica.config_differs",
                fingerprint=own,
                leader_fingerprint=theirs,
                leader=view.leader,
                note="the leader's [[sources]] and notifiers decide what is watched and sent",
                fix="give every replica the same configuration (a rolling deploy ends so)",
            )
        return theirs
