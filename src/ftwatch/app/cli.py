"""The ``ftwatch`` command: argument parsing, exit codes, one-line errors.

Only the standard library is imported here, so ``--version`` and ``--help`` start in
a few tens of milliseconds; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from ftwatch import __version__
from ftwatch.errors import FtwatchError

__all__ = ["main"]

_CONFIG_HELP = "TOML file (else $FTWATCH_CONFIG, ./ftwatch.toml, ~/.config/ftwatch/, /etc/ftwatch/)"

#: The listing commands' -o formats (see ftwatch.app.output; kept here: stdlib only).
_FORMATS = ("text", "wide", "json", "jsonl", "yaml")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as every usage error of ftwatch: exit 2.
        self.exit(2, f"ftwatch: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ftwatch", description="Watch fine-tuned models (Cohere, OpenAI, Bedrock) and notify on status changes."
    )
    parser.add_argument("--version", action="version", version=f"ftwatch {__version__}")
    # Global options go before or after the command (kubectl's way): before, under a
    # dest of their own, so a command's own default never blanks them.
    parser.add_argument("--config", dest="global_config", metavar="P", help=_CONFIG_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.add_parser(
        "version", help="this ftwatch's version (with -o json: Python and installed extras)"
    ).add_argument("-o", "--output", choices=("text", "json"), default="text", help="text (default) or one JSON object")
    _add_watching(commands)
    _add_reading(commands)
    _add_operating(commands)
    _add_tools(commands)
    _with_examples(parser)
    return parser


def _with_config(p: argparse.ArgumentParser, *, nested: bool = False) -> argparse.ArgumentParser:
    # Nested (outbox replay): no default of its own, or it would blank the parent's.
    default = argparse.SUPPRESS if nested else None
    p.add_argument("--config", metavar="P", default=default, help=_CONFIG_HELP)
    return p


def _with_output(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o",
        "--output",
        choices=_FORMATS,
        metavar="FORMAT",
        help="text (a table, the default), wide (with source, provider, times), json, jsonl or yaml",
    )


def _add_watching(commands: argparse._SubParsersAction[_Parser]) -> None:
    """run, watch, check-config."""
    run = _with_config(commands.add_parser("run", help="the daemon: poll, diff, notify until SIGTERM"))
    run.add_argument("--once", action="store_true", help="one cycle, deliver, exit")

    watch = _with_config(commands.add_parser("watch", help="live table of models and their transitions"))
    watch.add_argument("model_ids", nargs="*", metavar="MODEL_ID", help="models to show (default: every model)")
    watch.add_argument("--interval", type=_positive_float, metavar="S", help="seconds between polls")
    watch.add_argument("--once", action="store_true", help="print the table once and exit")

    check = _with_config(
        commands.add_parser("check-config", help="validate; print the effective config, secrets redacted")
    )
    check.add_argument(
        "--offline", action="store_true", help="validate the file and values only: read no secret file, reach no API"
    )


def _add_reading(commands: argparse._SubParsersAction[_Parser]) -> None:
    """events, models, notify-test, migrate."""
    events = _with_config(commands.add_parser("events", help="a model's whole event history, oldest first"))
    events.add_argument("model_id", metavar="MODEL_ID", help="the model or job (see 'ftwatch models')")
    events.add_argument("--json", action="store_true", help="one JSON array (as -o json)")
    _with_output(events)
    events.add_argument("--source", metavar="NAME", help="the source the model belongs to (default: the first)")

    models = _with_config(commands.add_parser("models", help="fine-tuned models visible to the key"))
    models.add_argument("--json", action="store_true", help="one JSON array (as -o json, fewer fields)")
    _with_output(models)
    models.add_argument("--source", metavar="NAME", help="one source only (default: every source)")

    _with_config(commands.add_parser("notify-test", help="send a synthetic transition to every notifier"))
    _with_config(commands.add_parser("migrate", help="bring the state file's schema up to this version"))


def _add_operating(commands: argparse._SubParsersAction[_Parser]) -> None:
    """outbox (replay, purge), status, wait."""
    outbox = _with_config(commands.add_parser("outbox", help="deliveries: pending, dead, delivered; replay, purge"))
    outbox.add_argument("--state", choices=("pending", "dead", "delivered"), help="default: pending and dead")
    outbox.add_argument("--notifier", metavar="KEY", help="one notifier's deliveries (its key, as listed)")
    outbox.add_argument("--json", action="store_true", help="one JSON object per line (as -o jsonl)")
    _with_output(outbox)
    actions = outbox.add_subparsers(dest="outbox_action", metavar="{replay,purge}", parser_class=_Parser)
    replay = _with_config(
        actions.add_parser("replay", help="dead letters back to pending; the daemon sends them"), nested=True
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="transition ids (see 'ftwatch outbox --state dead')")
    replay.add_argument("--dead", action="store_true", help="every dead letter")
    replay.add_argument("--notifier", metavar="KEY", dest="replay_notifier", help="only that notifier's dead letters")
    purge = _with_config(
        actions.add_parser("purge", help="remove delivered and dead rows older than a duration"), nested=True
    )
    purge.add_argument("--older-than", type=_duration, required=True, metavar="DURATION", help="e.g. 30d, 12h")

    status = _with_config(commands.add_parser("status", help="last poll, models, outbox per notifier, leader"))
    status.add_argument("--json", action="store_true", help="one JSON object (as -o json)")
    _with_output(status)

    wait = _with_config(commands.add_parser("wait", help="poll until the models reach a state; exit 0, 1 or 124"))
    wait.add_argument("model_ids", nargs="+", metavar="MODEL_ID", help="the models or jobs to wait for")
    wait.add_argument(
        "--until",
        choices=("ready", "failed", "any-terminal"),
        default="ready",
        help="the state to wait for (default ready); another terminal state exits 1",
    )
    wait.add_argument("--timeout", type=_duration, metavar="DURATION", help="give up (exit 124) after this long")
    wait.add_argument("--source", metavar="NAME", help="the source the models belong to (default: the only one)")
    wait.add_argument("--interval", type=_positive_float, metavar="S", help="seconds between polls (default 10)")
    wait.add_argument("--json", action="store_true", help="each transition as a JSON line (as -o jsonl)")
    _with_output(wait)


def _add_tools(commands: argparse._SubParsersAction[_Parser]) -> None:
    """completion, demo, simulate."""
    completion = commands.add_parser("completion", help="print a shell completion script: bash, zsh or fish")
    completion.add_argument("shell", nargs="?", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    # What the scripts call to complete --source: the names in the config (no key read).
    completion.add_argument("--list-sources", action="store_true", help=argparse.SUPPRESS)
    _with_config(completion)

    demo = commands.add_parser("demo", help="watch a built-in simulated API: no key, no network")
    demo.add_argument("--duration", type=_positive_float, default=16.0, metavar="S", help="seconds to run (default 16)")

    simulate = commands.add_parser(
        "simulate", help="serve simulated APIs to try a config and notifiers against; move their jobs by hand"
    )
    simulate.add_argument(
        "providers", nargs="*", metavar="PROVIDER", help="cohere, openai or bedrock (default: all three)"
    )
    simulate.add_argument("--empty", action="store_true", help="start with no jobs (default: a few of the demo's)")
    simulate.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="N",
        help="the first serves on port N, the next on N+1 (default: free ports)",
    )


#: Two or three examples at the end of each command's help.
_EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": ("ftwatch run --config /etc/ftwatch/ftwatch.toml", "ftwatch run --once   # one cycle, for cron"),
    "watch": ("ftwatch watch", "ftwatch watch ft-abc123 --interval 5", "ftwatch watch --once | less"),
    "check-config": ("ftwatch check-config --config ftwatch.toml", "ftwatch check-config --offline   # in CI"),
    "events": ("ftwatch events ft-abc123", "ftwatch events ftjob-abc --source openai -o json"),
    "models": ("ftwatch models", "ftwatch models -o wide", "ftwatch models --source openai -o yaml"),
    "notify-test": ("ftwatch notify-test --config ftwatch.toml", "ftwatch --config ftwatch.toml notify-test || exit 1"),
    "migrate": (
        "ftwatch migrate --config /etc/ftwatch/ftwatch.toml",
        "FTWATCH_STATE__URL=postgresql://owner@db/ftwatch ftwatch migrate   # as the schema's owner",
    ),
    "outbox": (
        "ftwatch outbox --state dead",
        "ftwatch outbox replay --dead",
        "ftwatch outbox purge --older-than 30d",
    ),
    "outbox replay": ("ftwatch outbox replay --dead", "ftwatch outbox replay ftw_5b0e0f6f --notifier slack-ops"),
    "outbox purge": ("ftwatch outbox purge --older-than 30d", "ftwatch outbox purge --older-than 12h"),
    "status": ("ftwatch status", "ftwatch status -o json"),
    "wait": (
        "ftwatch wait ft-abc123 --until ready --timeout 6h && promote",
        "ftwatch wait ftjob-1 ftjob-2 --until any-terminal -o jsonl",
    ),
    "version": ("ftwatch version", "ftwatch version -o json"),
    "completion": (
        "ftwatch completion bash > ~/.local/share/bash-completion/completions/ftwatch",
        "ftwatch completion fish > ~/.config/fish/completions/ftwatch.fish",
    ),
    "demo": ("ftwatch demo", "ftwatch demo --duration 60"),
    "simulate": (
        "ftwatch simulate",
        "ftwatch simulate openai --empty --port 8101",
        "echo 'move openai faq-bot failed' | ftwatch simulate",
    ),
}


def _with_examples(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    # argparse keeps a parser's options and commands only in these private lists.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                key = f"{prefix}{name}"
                if key in _EXAMPLES:
                    sub.formatter_class = argparse.RawDescriptionHelpFormatter
                    sub.epilog = "examples:\n" + "\n".join(f"  {line}" for line in _EXAMPLES[key])
                _with_examples(sub, key + " ")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _duration(text: str) -> float:
    from ftwatch.duration import parse_duration  # noqa: PLC0415 - small, stdlib only

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The commands a signal stops cleanly (exit 0); any other it ends with 128 + its number.
_STOP_CLEANLY = ("run", "watch", "demo", "simulate")


def _version(output: str) -> int:
    import importlib.util  # noqa: PLC0415 - only for this command
    import json  # noqa: PLC0415
    import platform  # noqa: PLC0415

    if output == "text":
        print(f"ftwatch {__version__}")
        return 0
    modules = {"postgres": "psycopg", "bedrock": "botocore", "vertex": "google.auth", "apprise": "apprise"}

    def installed(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # google.auth without google
            return False

    extras = sorted(extra for extra, module in modules.items() if installed(module))
    print(json.dumps({"version": __version__, "python": platform.python_version(), "extras": extras}))
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        # Bare `ftwatch`: the short usage with the commands, as a usage error.
        parser.print_help(sys.stderr)
        raise SystemExit(2)
    if unknown:
        # An unknown option points to that command's own help, not the top level's.
        sub = f"ftwatch {args.command}"
        print(f"ftwatch: unrecognized arguments: {' '.join(unknown)} (see '{sub} --help')", file=sys.stderr)
        raise SystemExit(2)
    if (getattr(args, "config", None) is None and "config" in vars(args)) or args.global_config is not None:
        args.config = getattr(args, "config", None) or args.global_config
    return args


#: The shell functions the scripts use for --source: the config's source names.
_SOURCES_PREAMBLE = {
    "bash": '_ftwatch_sources() { compgen -W "$(ftwatch completion --list-sources 2>/dev/null)" -- "$1"; }\n',
    "zsh": "_ftwatch_sources() { compadd -- $(ftwatch completion --list-sources 2>/dev/null) }\n",
    "fish": "",
}


#: Each shell's script, as shipped in the package (``generate_completion`` makes them).
_SCRIPTS = {"bash": "ftwatch.bash", "zsh": "_ftwatch", "fish": "ftwatch.fish"}


def _completion(args: argparse.Namespace) -> int:
    if args.list_sources:
        from ftwatch.settings import load_settings, source_specs  # noqa: PLC0415 - the config, no key

        settings, _ = load_settings(args.config)
        print("\n".join(spec.name for spec in source_specs(settings)))
        return 0
    if args.shell is None:
        print("ftwatch: completion needs a shell: bash, zsh or fish (see 'ftwatch completion --help')", file=sys.stderr)
        return 2
    # The shipped script, read: generating it (shtab) costs a tenth of a second.
    from pathlib import Path  # noqa: PLC0415

    print((Path(__file__).resolve().parent.parent / "completions" / _SCRIPTS[args.shell]).read_text(), end="")
    return 0


def generate_completion(shell: str) -> str:
    """The completion script for ``shell``, made from the parser by shtab (``--source``
    completed from the config); the shipped ones are these, kept current by a test."""
    import shtab  # noqa: PLC0415 - only to make the scripts

    parser = _parser()
    for action in _source_options(parser):
        action.complete = {"bash": "_ftwatch_sources", "zsh": "_ftwatch_sources"}  # type: ignore[attr-defined]
    return shtab.complete(parser, shell=shell, preamble=_SOURCES_PREAMBLE[shell]) + "\n"


def _source_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _source_options(sub)
        elif "--source" in action.option_strings:
            found.append(action)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.command == "version":
        return _version(args.output)
    if args.command == "completion":
        return _completion(args)
    from ftwatch.ops.lean_imports import import_core_libraries  # noqa: PLC0415 - after --help

    import_core_libraries()
    from ftwatch.ops.logs import configure_logging, flush_logs  # noqa: PLC0415 - structlog after --help

    configure_logging(os.environ.get("FTWATCH_LOG_LEVEL", "info"))
    received = [signal.SIGINT]
    if args.command not in _STOP_CLEANLY:

        def interrupted(signum: int, frame: FrameType | None) -> None:
            # SIGTERM ends a command the way Ctrl-C does, and says which it was.
            received[0] = signal.Signals(signum)
            # Exactly what Ctrl-C would do now. Inside asyncio.run that is its runner's
            # handler: it cancels the main task, the tasks unwind, then KeyboardInterrupt
            # is raised from run(). Raised here instead, it would land in whichever task
            # was running and be reported as that task's unhandled error.
            on_ctrl_c = signal.getsignal(signal.SIGINT)
            if callable(on_ctrl_c) and on_ctrl_c is not signal.default_int_handler:
                on_ctrl_c(signal.SIGINT, frame)
                return
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupted)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        # A script must never read an interrupted `wait` as "reached the state".
        return 0 if args.command in _STOP_CLEANLY else 128 + received[0]
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        known = _ftwatch_error(exc)
        flush_logs()  # the lines that led here come before the one that sums it up
        if known is not None:
            print(f"ftwatch: {known}", file=sys.stderr)
            return known.exit_code
        import structlog  # noqa: PLC0415

        structlog.get_logger("ftwatch.cli").exception("unexpected_error")
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


def _dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "watch":
        from ftwatch.app.watch import run_watch  # noqa: PLC0415 - rich loads only for the live view

        return run_watch(args)
    from ftwatch.app import commands  # noqa: PLC0415 - pydantic, httpx and anyio load here

    if command == "demo":
        return commands.run_demo(args.duration)
    if command == "simulate":
        from ftwatch.app.simulate import run_simulate  # noqa: PLC0415

        return run_simulate(args.providers, seed=not args.empty, port=args.port)
    return commands.run_command(args)
