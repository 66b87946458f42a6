"""The operator's commands: ``outbox`` (list, ``replay``, ``purge``) and ``status``.

They read the same configuration and state as ``run`` and work beside a running
daemon: SQLite without its flock, in short transactions (WAL: reads never block the
daemon), PostgreSQL like any other client. Nothing here sends a notification: a
replayed delivery is sent by the daemon, at its next look (within a second).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio

from ftwatch.app import wiring
from ftwatch.app.output import emit, table
from ftwatch.duration import format_duration
from ftwatch.errors import ConfigError
from ftwatch.model import format_timestamp, human_status
from ftwatch.outbox import DeliveryState
from ftwatch.settings import Settings, source_specs
from ftwatch.store.base import ModelState, OutboxRow, ReplicaRegistry, ReplicaView, Store, StoreFacts, models_in
from ftwatch.wording import plural

__all__ = ["outbox_list", "outbox_purge", "outbox_replay", "status"]

#: Rows ``ftwatch outbox`` shows at most (a note says when there are more).
LIST_LIMIT = 10_000


@contextmanager
def _state(settings: Settings) -> Iterator[Store]:
    store = wiring.open_store(settings, beside_daemon=True)
    try:
        yield store
    finally:
        store.close()


def _row_json(row: OutboxRow, now: float) -> dict[str, Any]:
    t = row.transition
    return {
        "id": t.id,
        "notifier": row.notifier,
        "type": t.type,
        "model_id": t.model_id,
        "model_name": t.model_name,
        "status": t.status,
        "state": row.state.value,
        "attempts": row.attempts,
        "age_s": round(max(0.0, now - row.created_at), 3),
        "last_error": row.last_error,
    }


def outbox_list(
    settings: Settings, state: str | None, notifier: str | None, as_json: bool, output: str = "text"
) -> int:
    """One row per delivery; without ``--state``, what still needs attention
    (pending and dead). ``--json`` keeps its JSON lines; ``-o`` as every listing."""
    states = [DeliveryState(state)] if state else [DeliveryState.PENDING, DeliveryState.DEAD]
    with _state(settings) as store:
        rows = [row for s in states for row in store.list_outbox(s, notifier, limit=LIST_LIMIT)]
    now = time.time()

    def text(wide: bool) -> None:
        header = ["TRANSITION", "NOTIFIER", "MODEL", "STATUS", "STATE", "ATTEMPTS", "AGE", "LAST ERROR"]
        extra = ["SOURCE", "PROVIDER", "OCCURRED"] if wide else []
        lines = []
        for r in rows:
            t = r.transition
            line = [
                t.id,
                r.notifier,
                t.model_name or t.model_id,
                human_status(t.status),
                r.state.value,
                str(r.attempts),
                format_duration(max(0.0, now - r.created_at)),
                " ".join((r.last_error or "-").split())[: 400 if wide else 80],
            ]
            lines.append(line + ([t.source, t.provider, t.occurred_at] if wide else []))
        _print_table([*header, *extra], lines)

    emit([_row_json(row, now) for row in rows], "jsonl" if as_json else output, text)
    if any(len([r for r in rows if r.state is s]) >= LIST_LIMIT for s in states):
        print(f"ftwatch: showing the oldest {LIST_LIMIT} per state; narrow with --notifier", file=sys.stderr)
    return 0


def outbox_replay(settings: Settings, ids: Sequence[str], dead: bool, notifier: str | None) -> int:
    if dead == bool(ids):
        raise ConfigError("outbox replay takes --dead or transition ids, not both (see 'ftwatch outbox --state dead')")
    wanted = list(dict.fromkeys(ids))
    with _state(settings) as store:
        count = store.replay(None if dead else wanted, notifier, time.time())
    print(f"re-queued {plural(count, 'delivery')}")
    if ids and count < len(wanted):
        # An id that names no dead letter is a usage error, as for `events` and `wait`.
        missing = len(wanted) - count
        raise ConfigError(
            f"{missing} of the {len(wanted)} ids {'is' if missing == 1 else 'are'} not a dead letter"
            f"{' of that notifier' if notifier else ''}: see 'ftwatch outbox --state dead'"
        )
    return 0


def outbox_purge(settings: Settings, older_than_s: float) -> int:
    with _state(settings) as store:
        count = store.purge(time.time() - older_than_s, (DeliveryState.DELIVERED, DeliveryState.DEAD))
    print(f"removed {plural(count, 'delivery')} (delivered or dead, queued over {format_duration(older_than_s)} ago)")
    return 0


def _in_scope(settings: Settings, rows: dict[str, ModelState]) -> tuple[dict[str, int], dict[str, int]]:
    """Models known per configured source, within its configured scope (its
    ``models`` when it names some), and those of them gone: rows a source no longer
    watches are not counted."""
    watched: dict[str, int] = {}
    gone: dict[str, int] = {}
    for spec in source_specs(settings):
        mine = models_in(spec.namespace, rows)
        if spec.models:
            mine = {model_id: mine[model_id] for model_id in spec.models if model_id in mine}
        watched[spec.name] = sum(1 for state in mine.values() if state.gone is None)
        gone[spec.name] = len(mine) - watched[spec.name]
    return watched, gone


def _configured_keys(settings: Settings) -> list[str] | None:
    """The configured notifiers' outbox keys, in config order (building them reads
    their secret files); ``None`` when they cannot be built here."""
    if not settings.notifiers:
        return []

    async def build() -> list[str]:
        async with wiring.hook_client() as http:
            loaded = await anyio.to_thread.run_sync(
                wiring.load_notifiers, settings, wiring.notifier_context(http, sys.stdout)
            )
            return [n.key for n in loaded]

    try:
        return anyio.run(build)
    except ConfigError as exc:
        print(f"ftwatch: the configured notifiers cannot be named here: {exc}", file=sys.stderr)
        return None


def status(settings: Settings, as_json: bool, output: str = "text") -> int:
    report, facts, replicas = _status_report(settings, time.time())
    if as_json or output in ("json", "jsonl", "yaml"):
        emit(report, "json" if as_json else output, lambda wide: None)
        return 0
    _print_status(report, facts, replicas)
    return 0


def _status_report(settings: Settings, now: float) -> tuple[dict[str, Any], StoreFacts, ReplicaView | None]:
    """What ``ftwatch status`` says, as one document, with the facts it came from."""
    with _state(settings) as store:
        facts = store.facts()
        pending = store.count_deliveries(DeliveryState.PENDING)
        dead = store.count_deliveries(DeliveryState.DEAD)
        delivered = store.count_deliveries(DeliveryState.DELIVERED)
        oldest = store.oldest_pending_age(now)
        where = store.where
        replicas = store.replicas(now) if isinstance(store, ReplicaRegistry) else None
        watched, gone_by_source = _in_scope(settings, store.load_models())
    configured = _configured_keys(settings)
    # Every configured notifier (rows or not), then any other the outbox still holds.
    known = pending.keys() | dead.keys() | delivered.keys()
    notifiers = [*(configured or []), *sorted(known - set(configured or []))]
    report: dict[str, Any] = {
        "state": where,
        "last_poll_at": format_timestamp(int(facts.last_poll_at * 1e9), 3) if facts.last_poll_at else None,
        "last_poll_age_s": round(now - facts.last_poll_at, 3) if facts.last_poll_at else None,
        "models": watched,
        #: Jobs gone from their API's list since (deleted, aged out): not in "models".
        "models_gone": {name: n for name, n in gone_by_source.items() if n},
        "notifiers": {
            key: {
                "pending": pending.get(key, 0),
                "dead": dead.get(key, 0),
                "delivered": delivered.get(key, 0),
                "configured": None if configured is None else key in configured,
            }
            for key in notifiers
        },
        "oldest_pending_s": None if oldest is None else round(oldest, 3),
        "leader": None,
    }
    if facts.lease is not None:
        report["leader"] = {"holder": facts.lease.holder if facts.lease.valid else None, "term": facts.lease.term}
    if replicas is not None:
        # What each replica watches: they must agree, or the leader alone decides.
        report["replicas"] = replicas.fingerprints
        report["replicas_agree"] = len(set(replicas.fingerprints.values())) <= 1
    return report, facts, replicas


def _print_status(report: dict[str, Any], facts: StoreFacts, replicas: ReplicaView | None) -> None:
    polled = (
        f"{report['last_poll_at']} ({format_duration(report['last_poll_age_s'])} ago)"
        if facts.last_poll_at
        else "never"
    )
    print(f"state:            {report['state']}")
    print(f"last good poll:   {polled}")
    gone = report["models_gone"]
    counts = ", ".join(
        f"{name} {count}" + (f" ({gone[name]} gone)" if gone.get(name) else "")
        for name, count in report["models"].items()
    )
    print(f"models watched:   {counts}")
    oldest = report["oldest_pending_s"]
    print(f"oldest pending:   {'-' if oldest is None else format_duration(oldest)}")
    if facts.lease is not None:
        holder = facts.lease.holder if facts.lease.valid else "(none: the lease has expired)"
        print(f"leader:           {holder} (term {facts.lease.term})")
    if replicas is not None and replicas.fingerprints:
        agree = "same configuration" if report["replicas_agree"] else "CONFIGURATIONS DIFFER"
        print(f"replicas:         {len(replicas.fingerprints)}, {agree}")
        if not report["replicas_agree"]:
            for holder_name, digest in sorted(replicas.fingerprints.items()):
                mark = " (leader)" if holder_name == replicas.leader else ""
                print(f"  {holder_name}{mark}: {digest}")
    _print_table(
        ("NOTIFIER", "PENDING", "DEAD", "DELIVERED"),
        [
            (
                key + (" (not configured)" if v["configured"] is False else ""),
                str(v["pending"]),
                str(v["dead"]),
                str(v["delivered"]),
            )
            for key, v in report["notifiers"].items()
        ],
    )


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table(header, rows)
