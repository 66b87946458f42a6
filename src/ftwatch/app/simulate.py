"""``ftwatch simulate [PROVIDER…]``: the simulated APIs in the foreground, for a
user's own configuration and notifiers.

It prints each simulator's URL and key, a ready ``[[sources]]`` snippet and the
``export`` lines for the keys, then takes commands, one per line, on standard input:

    add PROVIDER NAME [STATUS]    a new job (its provider's first status by default)
    move PROVIDER NAME STATUS     move a job (by its name, or its id)
    list                          every job, its id and its status
    help                          these commands
    quit                          stop (as do Ctrl-C, SIGTERM and the end of the input)

A job named by ``move`` that does not exist yet is created. Without a terminal (a
pipe, a service) the commands come from whatever feeds standard input; with none,
it serves until stopped.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.lowlevel import EventLoopToken
from anyio.streams.memory import MemoryObjectSendStream

from ftwatch.app.demo import PROVIDERS, SimWorld, simulated_world
from ftwatch.app.signals import handle_signals
from ftwatch.statuses import BUILT_IN

__all__ = ["run_simulate", "toml_table"]

_HELP = (
    "commands: add PROVIDER NAME [STATUS] | move PROVIDER NAME STATUS | list | help | quit"
    " (a job moved by a name not seen yet is created)"
)


def toml_table(header: str, table: dict[str, Any]) -> str:
    """One ``[[header]]`` table of plain values (JSON's strings are TOML's)."""
    lines = [f"[[{header}]]"]
    for key, value in table.items():
        lines.append(f"{key} = {json.dumps(value if isinstance(value, int | float | bool) else str(value))}")
    return "\n".join(lines)


def _banner(world: SimWorld, tmp: Path) -> str:
    parts = [f"ftwatch simulate: {len(world.sims)} simulated API(s) on 127.0.0.1 (Ctrl-C stops)", ""]
    for provider, sim in world.sims.items():
        parts.append(f"# {provider}: {sim.url}  ({len(sim.jobs())} jobs)")
    parts += ["", "# Add to your ftwatch.toml:"]
    parts += [toml_table("sources", table) + "\n" for table in world.sources()]
    parts.append("# And, in the shell that runs ftwatch, the simulators' keys:")
    # Only the keys: the files the tests point elsewhere matter to no user's shell.
    keys = {name: value for name, value in world.credentials_env(tmp).items() if not name.endswith("_FILE")}
    parts += [f"export {name}={shlex.quote(value)}" for name, value in keys.items()]
    parts += ["", _HELP]
    return "\n".join(parts)


def _words(provider: str) -> str:
    vocabulary = BUILT_IN.get(provider)
    return ", ".join(vocabulary.states) if vocabulary is not None else "any"


def _job_name(world: SimWorld, provider: str, name: str) -> str:
    """A job's name as the world knows it: ``name`` itself, or the name of the job
    whose id it is."""
    if (provider, name) in world.ids:
        return name
    for known, (job_name, _) in world.sims[provider].jobs().items():
        if name == known:
            world.ids.setdefault((provider, job_name), known)
            return job_name
    return name


def command(world: SimWorld, line: str) -> str | None:
    """Run one command line; returns what to print (``None``: stop)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        return f"error: {exc}"
    if not words:
        return ""
    verb, args = words[0].lower(), words[1:]
    if verb in ("quit", "exit"):
        return None
    if verb == "help":
        return _HELP
    if verb == "list":
        rows = [
            f"{provider}\t{job_id}\t{name}\t{status}"
            for provider, sim in world.sims.items()
            for job_id, (name, status) in sim.jobs().items()
        ]
        return "\n".join(["PROVIDER\tID\tNAME\tSTATUS", *rows])
    if verb not in ("add", "move") or len(args) < (2 if verb == "add" else 3) or len(args) > 3:
        return f"error: {line.strip()!r} is no command; {_HELP}"
    provider, name = args[0].lower(), args[1]
    if provider not in world.sims:
        return f"error: {provider!r} is not simulated here; simulated: {', '.join(world.sims)}"
    sim = world.sims[provider]
    status = args[2] if len(args) > 2 else sim.lifecycle[0]
    vocabulary = BUILT_IN.get(provider)
    if vocabulary is not None and status not in vocabulary.states:
        return f"error: {status!r} is no {provider} status; its statuses: {_words(provider)}"
    if verb == "add" and (provider, name) in world.ids:
        return f"error: {provider} already has a job named {name!r}; move it instead"
    job_id = world.move(provider, _job_name(world, provider, name), status)
    return f"{provider} {job_id} {name}: {status}"


def _stdin_lines(send: MemoryObjectSendStream[str], token: EventLoopToken) -> None:
    """Standard input's lines into ``send``, from a daemon thread of its own (a
    worker thread blocked in ``readline`` would hold the process at its exit)."""
    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, RuntimeError):
        for line in sys.stdin:
            anyio.from_thread.run_sync(send.send_nowait, line, token=token)
    with contextlib.suppress(RuntimeError):
        anyio.from_thread.run_sync(send.close, token=token)


async def _read_commands(world: SimWorld, stop: anyio.Event) -> None:
    """Commands from standard input until ``quit`` or its end."""
    send, receive = anyio.create_memory_object_stream[str](100)
    token = anyio.lowlevel.current_token()
    threading.Thread(target=_stdin_lines, args=(send, token), name="ftwatch-stdin", daemon=True).start()
    async for line in receive:  # the end of the input: serve on until a signal
        answer = command(world, line)
        if answer is None:
            stop.set()
            return
        if answer:
            print(answer, flush=True)


def run_simulate(providers: Sequence[str], *, seed: bool = True, port: int = 0) -> int:
    """Serve the simulators of ``providers`` (every one when empty) until stopped,
    on ``port`` and the ones after it (0: free ones)."""
    chosen = list(dict.fromkeys(p.lower() for p in providers)) or list(PROVIDERS)
    unknown = [p for p in chosen if p not in PROVIDERS]
    if unknown:
        print(f"ftwatch: no simulator of {', '.join(unknown)}; simulated: {', '.join(PROVIDERS)}", file=sys.stderr)
        return 2
    if not 0 <= port <= 65535 - len(chosen):
        print(
            f"ftwatch: --port {port} is no port for {len(chosen)} simulator(s): use 1 to 65535, or 0", file=sys.stderr
        )
        return 2

    async def main() -> None:
        stop = anyio.Event()

        async def stopped() -> None:
            stop.set()

        with tempfile.TemporaryDirectory(prefix="ftwatch-simulate-") as tmp:
            world_cm = simulated_world(chosen, seed=seed, port=port)
            async with world_cm as world, anyio.create_task_group() as group:
                await group.start(handle_signals, stopped)
                print(_banner(world, Path(tmp)), flush=True)
                group.start_soon(_read_commands, world, stop)
                await stop.wait()
                group.cancel_scope.cancel()

    anyio.run(main)
    return 0
