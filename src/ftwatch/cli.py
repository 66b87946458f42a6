"""The ``ftwatch`` command: argument parsing, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio
import httpx
import structlog

from ftwatch import __version__
from ftwatch.errors import ConfigError, FtwatchError
from ftwatch.logs import configure_logging, flush_logs
from ftwatch.model import Transition, format_timestamp, human_status
from ftwatch.notifiers import NotifierContext, build_notifiers, validate_notifiers
from ftwatch.settings import KeySource, Settings, load_settings, redacted
from ftwatch.source import ModelNotFoundError, SourceError

__all__ = ["main"]

log = structlog.get_logger("ftwatch.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as every usage error of ftwatch: exit 2.
        self.exit(2, f"ftwatch: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ftwatch", description="Watch Cohere fine-tuned models and notify on status changes.")
    parser.add_argument("--version", action="version", version=f"ftwatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="P", help="TOML file (else $FTWATCH_CONFIG, else ./ftwatch.toml)")
        return p

    run = with_config(commands.add_parser("run", help="the daemon: poll, diff, notify until SIGTERM"))
    run.add_argument("--once", action="store_true", help="one cycle, deliver, exit")

    watch = with_config(commands.add_parser("watch", help="live table of models and their transitions"))
    watch.add_argument("model_ids", nargs="*", metavar="MODEL_ID")
    watch.add_argument("--interval", type=_positive_float, metavar="S", help="seconds between polls")
    watch.add_argument("--once", action="store_true", help="print the table once and exit")

    with_config(commands.add_parser("check-config", help="validate; print the effective config, secrets redacted"))

    events = with_config(commands.add_parser("events", help="a model's whole event history, oldest first"))
    events.add_argument("model_id", metavar="MODEL_ID")
    events.add_argument("--json", action="store_true")

    models = with_config(commands.add_parser("models", help="fine-tuned models visible to the key"))
    models.add_argument("--json", action="store_true")

    with_config(commands.add_parser("notify-test", help="send a synthetic transition to every notifier"))

    with_config(commands.add_parser("migrate", help="bring the state file's schema up to this version"))

    demo = commands.add_parser("demo", help="watch a built-in simulated API: no key, no network")
    demo.add_argument("--duration", type=_positive_float, default=16.0, metavar="S")
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(os.environ.get("FTWATCH_LOG_LEVEL", "info"))
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        known = _ftwatch_error(exc)
        flush_logs()  # the lines that led here come before the one that sums it up
        if known is not None:
            print(f"ftwatch: {known}", file=sys.stderr)
            return known.exit_code
        log.exception("unexpected_error")
        print(
            f"ftwatch: unexpected {type(exc).__name__}; run with FTWATCH_LOG_LEVEL=debug and report it", file=sys.stderr
        )
        return 1


def _ftwatch_error(exc: BaseException) -> FtwatchError | None:
    """Our own error, even from inside a task group's exception group."""
    if isinstance(exc, FtwatchError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _ftwatch_error(inner)) is not None:
                return found
    return None


def _settings(args: argparse.Namespace) -> tuple[Settings, Path | None]:
    settings, path = load_settings(args.config)
    configure_logging(settings.log_level)
    return settings, path


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "demo":
        from ftwatch.demo import run_demo  # noqa: PLC0415 - starts only what the demo needs

        return anyio.run(run_demo, args.duration)
    if command == "watch":
        from ftwatch.watch import run_watch  # noqa: PLC0415 - rich loads only for the live view

        return run_watch(args)
    settings, path = _settings(args)
    if command == "check-config":
        return _check_config(settings, path)
    if command == "run":
        return _run(settings, path, once=args.once)
    if command == "events":
        return anyio.run(_events, settings, args.model_id, args.json)
    if command == "models":
        return anyio.run(_models, settings, args.json)
    if command == "notify-test":
        return anyio.run(_notify_test, settings)
    if command == "migrate":
        return _migrate(settings)
    raise AssertionError(command)


def _run(settings: Settings, path: Path | None, *, once: bool) -> int:
    from ftwatch.daemon import Daemon  # noqa: PLC0415 - keeps the light commands light

    KeySource(settings.cohere.api_key_file).read()  # a missing key is exit 2 before anything starts
    anyio.run(lambda: Daemon(settings, path).run(once=once))
    return 0


def _migrate(settings: Settings) -> int:
    from ftwatch.daemon import open_store  # noqa: PLC0415 - keeps the light commands light

    store = open_store(settings)  # opening migrates forward, in one transaction
    try:
        version = store.schema_version()
    finally:
        store.close()
    print(f"ftwatch: state file {store.path} is at schema version {version}", file=sys.stderr)
    return 0


def _check_config(settings: Settings, path: Path | None) -> int:
    key_source = KeySource(settings.cohere.api_key_file)
    key_source.read()
    dump: dict[str, Any] = settings.model_dump()
    dump["notifiers"] = [config.model_dump() for _, config in validate_notifiers(settings.notifiers)]
    dump["cohere"]["api_key"] = f"(set, from {key_source.describe()})"
    dump["state"]["path"] = str(settings.state_path())
    report = {"config_file": str(path) if path else None, **dump}
    print(json.dumps(redacted(report), indent=2))
    print(f"ftwatch: configuration is valid ({len(dump['notifiers'])} notifiers)", file=sys.stderr)
    return 0


async def _events(settings: Settings, model_id: str, as_json: bool) -> int:
    from ftwatch.daemon import api_client, make_source  # noqa: PLC0415

    async with api_client(settings) as http:
        source = make_source(http, settings)
        try:
            events = await source.list_events(model_id)
        except ModelNotFoundError:
            raise FtwatchError(f"model {model_id} not found: check the id with 'ftwatch models'") from None
        except SourceError as exc:
            raise FtwatchError(f"the API failed: {exc}") from None
    events.sort(key=lambda e: e.sort_key())
    if as_json:
        rows = [{"status": e.status, "created_at": e.created_at, "user_id": e.user_id} for e in events]
        print(json.dumps(rows, indent=2))
    else:
        for event in events:
            print(f"{event.created_at}  {event.status:<28} {event.user_id or '-'}")
    return 0


async def _models(settings: Settings, as_json: bool) -> int:
    from ftwatch.daemon import api_client, make_source  # noqa: PLC0415

    async with api_client(settings) as http:
        try:
            models = (await make_source(http, settings).list_models()).models
        except SourceError as exc:
            raise FtwatchError(f"the API failed: {exc}") from None
    if as_json:
        rows = [
            {
                "id": m.id,
                "name": m.name,
                "status": m.status,
                "updated_at": format_timestamp(ns) if (ns := m.updated_at_ns) is not None else None,
            }
            for m in models
        ]
        print(json.dumps(rows, indent=2))
        return 0
    width = max([len(m.id) for m in models] + [2])
    name_width = max([len(m.name or "") for m in models] + [4])
    print(f"{'ID':<{width}}  {'NAME':<{name_width}}  STATUS")
    for m in models:
        print(f"{m.id:<{width}}  {m.name or '-':<{name_width}}  {human_status(m.status)}")
    return 0


async def _notify_test(settings: Settings) -> int:
    if not settings.notifiers:
        raise ConfigError("no notifiers configured: add a [[notifiers]] table or FTWATCH_NOTIFIERS")
    now = format_timestamp(time.time_ns(), 3)
    transition = Transition(
        id="ftw_test_" + now.replace(":", "").replace("-", "").replace(".", ""),
        model_id="ft-test-0000",
        model_name="ftwatch-notify-test",
        status="STATUS_READY",
        previous_status="STATUS_DEPLOYING_API",
        occurred_at=now,
        user_id=None,
        detected_at=now,
    )
    results: list[tuple[str, str | None]] = []
    async with httpx.AsyncClient(timeout=10.0) as http:
        loaded = build_notifiers(settings.notifiers, NotifierContext(http=http, stdout=sys.stdout))

        async def one(index: int) -> None:
            from ftwatch.notifiers import DeliveryFailedError  # noqa: PLC0415

            try:
                await loaded[index].notifier.send(transition)
            except DeliveryFailedError as exc:
                results[index] = (results[index][0], exc.detail)
            except Exception as exc:  # noqa: BLE001 - report a plug-in's failure like any other
                results[index] = (results[index][0], f"{type(exc).__name__}: {exc}"[:200])

        results.extend((n.notifier.description, None) for n in loaded)
        async with anyio.create_task_group() as group:
            for index in range(len(loaded)):
                group.start_soon(one, index)
    for description, error in results:
        line = f"ok      {description}" if error is None else f"FAILED  {description}: {error}"
        print(line)
    return 1 if any(error for _, error in results) else 0
