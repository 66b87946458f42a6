"""The bodies of the commands that read a configuration (all but ``demo`` and ``watch``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from ftwatch.app import wiring
from ftwatch.app.output import emit, table
from ftwatch.errors import ConfigError, FtwatchError
from ftwatch.model import ModelInfo, Transition, format_timestamp, human_status
from ftwatch.notifiers.base import DeliveryFailedError
from ftwatch.ops.logs import configure_logging
from ftwatch.settings import Settings, load_settings, redacted, source_specs
from ftwatch.sources.base import ModelNotFoundError, SourceError
from ftwatch.statuses import BUILT_IN, COHERE
from ftwatch.textsafe import printable
from ftwatch.wording import plural

__all__ = ["run_command", "run_demo"]


def run_demo(duration_s: float) -> int:
    """The demo: the simulated world, watched by the live view in a terminal, else by
    the same daemon as ``run`` printing each transition."""
    import os  # noqa: PLC0415

    from ftwatch.app.daemon import Daemon  # noqa: PLC0415
    from ftwatch.app.demo import demo_world  # noqa: PLC0415
    from ftwatch.app.watch import watch_models  # noqa: PLC0415

    configure_logging(os.environ.get("FTWATCH_LOG_LEVEL", "warning"))

    async def demo() -> None:
        async with demo_world(duration_s) as settings:
            if sys.stdout.isatty():
                await watch_models(settings, [], settings.poll.interval_s, live=True, duration_s=duration_s)
                return
            daemon = Daemon(settings, None)
            async with anyio.create_task_group() as group:

                async def stop_later() -> None:
                    await anyio.sleep(duration_s)
                    daemon.stop()

                group.start_soon(stop_later)
                await daemon.run()

    anyio.run(demo)
    return 0


def run_command(args: argparse.Namespace) -> int:
    settings, path = load_settings(args.config)
    configure_logging(settings.log_level)
    command: str = args.command
    if command == "check-config":
        return anyio.run(_check_config, settings, path, args.offline)
    if command == "run":
        return _run(settings, path, once=args.once)
    if command == "events":
        output = "legacy-json" if args.json else args.output or "text"
        return anyio.run(_events, settings, args.model_id, output, args.source)
    if command == "models":
        return anyio.run(_models, settings, "legacy-json" if args.json else args.output or "text", args.source)
    if command == "notify-test":
        return anyio.run(_notify_test, settings)
    if command == "migrate":
        return _migrate(settings)
    if command in ("outbox", "status"):
        return _operate(settings, args)
    if command == "wait":
        from ftwatch.app.wait import run_wait  # noqa: PLC0415

        return run_wait(settings, args)
    raise AssertionError(command)


def _operate(settings: Settings, args: argparse.Namespace) -> int:
    from ftwatch.app import operate  # noqa: PLC0415

    if args.command == "status":
        return operate.status(settings, args.json, args.output or "text")
    if args.outbox_action == "replay":
        return operate.outbox_replay(settings, args.ids, args.dead, args.replay_notifier or args.notifier)
    if args.outbox_action == "purge":
        return operate.outbox_purge(settings, args.older_than)
    return operate.outbox_list(settings, args.state, args.notifier, args.json, args.output or "text")


def _run(settings: Settings, path: Path | None, *, once: bool) -> int:
    from ftwatch.app.daemon import Daemon  # noqa: PLC0415 - only run needs the daemon

    wiring.check_credentials(settings)  # a missing key is exit 2 before anything starts
    anyio.run(lambda: Daemon(settings, path).run(once=once))
    return 0


def _migrate(settings: Settings) -> int:
    store = wiring.open_store(settings)  # opening migrates forward, in one transaction
    try:
        version = store.schema_version()
    finally:
        store.close()
    print(f"ftwatch: state {store.where} is at schema version {version}", file=sys.stderr)
    return 0


async def _check_config(settings: Settings, path: Path | None, offline: bool = False) -> int:
    """Validate; ``offline`` (a CI runner): the file and its values only, no secret
    file read, no key looked up, nothing built that would reach anything."""
    key = wiring.key_provider(settings) if not settings.sources and not offline else None
    if key is not None:
        key.read()
    if not offline:
        # Built, not only validated: a secret file, an Apprise URL, a source's key or an
        # optional package that is missing shows here rather than at the first delivery.
        async with wiring.hook_client() as http:
            wiring.load_notifiers(settings, wiring.notifier_context(http, sys.stdout))
            wiring.build_sources(settings, wiring.ApiAccess(http))
        for spec in source_specs(settings):
            if (push := spec.webhook) is not None:
                push.read_secret()  # a webhook secret file that is missing shows here too
    dump: dict[str, Any] = settings.model_dump(mode="python")
    dump["notifiers"] = [config.model_dump() for config in settings.notifiers]
    dump["sources"] = [config.model_dump() for config in settings.sources]
    if key is not None:
        dump["cohere"]["api_key"] = f"(set, from {key.describe()})"
    dump["state"]["path"] = str(wiring.state_path(settings))
    report = {"config_file": str(path) if path else None, **dump}
    print(json.dumps(redacted(report), indent=2, default=str))
    checked = " (offline: secret files and keys not read)" if offline else ""
    print(f"ftwatch: configuration is valid ({plural(len(dump['notifiers']), 'notifier')}){checked}", file=sys.stderr)
    return 0


async def _events(settings: Settings, model_id: str, output: str, source_name: str | None) -> int:
    async with wiring.api_client(settings) as http:
        source = wiring.build_source(settings, wiring.ApiAccess(http), name=source_name)
        try:
            events = await source.list_events(model_id)
        except ModelNotFoundError:
            # An id that names nothing is a usage error, as for `wait` and `outbox replay`.
            raise ConfigError(f"model {model_id} not found: check the id with 'ftwatch models'") from None
        except SourceError as exc:
            raise FtwatchError(f"the API failed: {exc}") from None
    # Stable, by time alone: events of one second (OpenAI dates in seconds) keep the
    # order the source gave them in, oldest first.
    events.sort(key=lambda e: (e.created_at_ns is None, e.created_at_ns or 0))
    rows = [
        {"status": e.status, "created_at": e.created_at, "user_id": e.user_id}
        | ({"message": e.message} if e.message else {})
        for e in events
    ]
    spec = (
        source_specs(settings)[0]
        if source_name is None
        else next(s for s in source_specs(settings) if s.name == source_name)
    )

    def text(wide: bool) -> None:
        for event in events:
            what = event.user_id or event.message or "-"
            lead = f"{spec.name}  {spec.type}  " if wide else ""
            print(printable(f"{lead}{event.created_at}  {event.status:<28} {what}"))

    if output == "legacy-json":
        print(json.dumps(rows, indent=2))
    else:
        emit([row | {"source": spec.name} for row in rows] if output != "text" else rows, output, text)
    return 0


async def _models(settings: Settings, output: str, source_name: str | None) -> int:
    listed: list[tuple[str, ModelInfo]] = []
    async with wiring.api_client(settings) as http:
        sources = wiring.build_sources(settings, wiring.ApiAccess(http))
        # Each source says what its words mean (a plug-in's too).
        words = {spec.name: source.vocabulary for spec, source in sources}
        names = [spec.name for spec, _ in sources]
        if source_name is not None and source_name not in names:
            raise ConfigError(f"no source named {source_name!r}; configured: {', '.join(names)}")
        for spec, source in sources:
            if source_name not in (None, spec.name):
                continue
            try:
                listed.extend((spec.name, m) for m in (await source.list_models()).models)
            except SourceError as exc:
                where = f" of source {spec.name!r}" if len(sources) > 1 else ""
                raise FtwatchError(f"the API{where} failed: {exc}") from None
    several = len({name for name, _ in listed}) > 1 or bool(settings.sources)
    types = {spec.name: spec.type for spec in source_specs(settings)}

    def updated(m: ModelInfo) -> str | None:
        return format_timestamp(ns) if (ns := m.updated_at_ns) is not None else None

    if output == "legacy-json":  # --json: the shape scripts already read
        rows = [
            {"id": m.id, "name": m.name, "status": m.status, "updated_at": updated(m)}
            | ({"source": name} if several else {})
            for name, m in listed
        ]
        print(json.dumps(rows, indent=2))
        return 0

    def text(wide: bool) -> None:
        header = (["SOURCE"] if several or wide else []) + ["ID", "NAME", "STATUS"]
        header += ["PROVIDER", "STATE", "UPDATED"] if wide else []
        lines = []
        for name, m in listed:
            line = ([name] if several or wide else []) + [m.id, m.name or "-", human_status(m.status)]
            line += [types.get(name, "?"), words[name].state_of(m.status), updated(m) or "-"] if wide else []
            lines.append(line)
        table(header, lines)

    document = [
        {
            "source": name,
            "provider": types.get(name),
            "id": m.id,
            "name": m.name,
            "status": m.status,
            "state": words[name].state_of(m.status),
            "updated_at": updated(m),
        }
        for name, m in listed
    ]
    emit(document, output, text)
    return 0


def _test_transition(settings: Settings, now: str) -> Transition:
    """A synthetic step shaped like the first configured source's: its provider, its
    name, and that provider's own words for "running" and "ready"."""
    spec = source_specs(settings)[0]
    vocabulary = BUILT_IN.get(spec.type, COHERE)
    provider = vocabulary.provider
    order = list(vocabulary.states.items())
    at = next(i for i, (_, state) in enumerate(order) if state == "ready")
    ready = order[at][0]
    running = next((word for word, state in reversed(order[:at]) if state == "running"), None)
    test_id = "ftw_test_" + now.replace(":", "").replace("-", "").replace(".", "")
    return Transition.of_ftwatch(
        test_id,
        "ft-test-0000",
        "ftwatch-notify-test",
        ready,
        now,
        previous_status=running,
        provider=provider,
        source=spec.name,
    )


async def _notify_test(settings: Settings) -> int:
    if not settings.notifiers:
        raise ConfigError("no notifiers configured: add a [[notifiers]] table or FTWATCH_NOTIFIERS")
    now = format_timestamp(time.time_ns(), 3)
    transition = _test_transition(settings, now)
    results: list[tuple[str, str | None]] = []
    async with wiring.hook_client() as http:
        loaded = wiring.load_notifiers(settings, wiring.notifier_context(http, sys.stdout))

        async def one(index: int) -> None:
            try:
                await loaded[index].notifier.send(transition)
            except DeliveryFailedError as exc:
                results[index] = (results[index][0], exc.detail)
            except Exception as exc:  # noqa: BLE001 - report a plug-in's failure like any other
                results[index] = (results[index][0], f"{type(exc).__name__}: {exc}"[:200])

        # By type and host, and by key: two webhooks to one host are told apart.
        results.extend((f"{n.notifier.description} [{n.key}]", None) for n in loaded)
        async with anyio.create_task_group() as group:
            for index in range(len(loaded)):
                group.start_soon(one, index)
    for description, error in results:
        line = f"ok      {description}" if error is None else f"FAILED  {description}: {error}"
        print(printable(line))
    return 1 if any(error for _, error in results) else 0
