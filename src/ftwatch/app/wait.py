"""``ftwatch wait`` and :func:`wait_for`: poll until models reach a state.

The same client, retries, budget, diff and cycle as ``run`` (state in memory, no
file): the first cycle says where each model is, later ones report each transition
as it happens. Terminal states are the normalized ones a job does not leave by itself
(ready, failed, cancelled, deleted); paused, queued and running are waited through.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import anyio

from ftwatch.app import wiring
from ftwatch.app.output import emit
from ftwatch.errors import AuthRefusedError, ConfigError
from ftwatch.model import Transition, check_model_id
from ftwatch.poller import Poller
from ftwatch.settings import Settings, load_settings, source_specs
from ftwatch.sources.base import SourceError
from ftwatch.statuses import COHERE, TERMINAL_STATES
from ftwatch.wording import plural, reached, text_line

__all__ = ["Until", "WaitOutcome", "run_wait", "wait_for"]

#: Exit code on timeout, as timeout(1) has it.
TIMEOUT_EXIT = 124

#: A script wants to hear sooner than a daemon's 30 s.
DEFAULT_INTERVAL_S = 10.0


class Until(enum.StrEnum):
    READY = "ready"
    FAILED = "failed"
    ANY_TERMINAL = "any-terminal"

    def wants(self, state: str) -> bool:
        if self is Until.ANY_TERMINAL:
            return state in TERMINAL_STATES
        return state == self.value


@dataclass(slots=True)
class WaitOutcome:
    """Where the models ended. ``ok``: every one reached the wanted state; otherwise
    ``stopped_by`` is one that reached another terminal state."""

    statuses: dict[str, str]
    transitions: list[Transition] = field(default_factory=list)
    #: Each model's normalized state (its provider's mapping of its status).
    states: dict[str, str] = field(default_factory=dict)
    ok: bool = False
    stopped_by: str | None = None

    def final(self) -> dict[str, Transition | None]:
        """Each model's last transition while waiting (``None``: it was there already)."""
        last: dict[str, Transition | None] = dict.fromkeys(self.statuses)
        for transition in self.transitions:
            last[transition.model_id] = transition
        return last


def _judge(outcome: WaitOutcome, until: Until) -> bool:
    """Whether waiting is over (and ``outcome`` says how)."""
    states = outcome.states or {model_id: COHERE.state_of(status) for model_id, status in outcome.statuses.items()}
    for model_id, state in states.items():
        if state in TERMINAL_STATES and not until.wants(state):
            outcome.stopped_by = model_id
            return True
    outcome.ok = all(until.wants(state) for state in states.values())
    return outcome.ok


async def wait_for(
    model_ids: Sequence[str],
    *,
    until: Until | str = Until.READY,
    timeout_s: float | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    settings: Settings | None = None,
    on_transition: Callable[[Transition], None] | None = None,
    source: str | None = None,
) -> WaitOutcome:
    """Poll until every model is in ``until``'s state, or one is in another terminal
    state (then ``outcome.ok`` is false). Raises :class:`TimeoutError` after
    ``timeout_s``, :class:`~ftwatch.errors.ConfigError` for an unknown model or a
    missing key, :class:`~ftwatch.errors.AuthRefusedError` for a refused key. Settings
    default to what ``run`` would read (environment, ./ftwatch.toml). ``source``: the
    configured source the models belong to (default: the first)."""
    wanted = Until(until)
    ids = [check_model_id(model_id) for model_id in dict.fromkeys(model_ids)]
    if not ids:
        raise ConfigError("wait for which models? give at least one MODEL_ID")
    if settings is None:
        settings, _ = load_settings(None)
    with anyio.fail_after(timeout_s) if timeout_s is not None else contextlib.nullcontext():
        return await _poll_until(settings, ids, wanted, interval_s, on_transition=on_transition, source_name=source)


async def _poll_until(
    settings: Settings,
    ids: list[str],
    until: Until,
    interval_s: float,
    *,
    on_transition: Callable[[Transition], None] | None,
    source_name: str | None,
) -> WaitOutcome:
    store = wiring.memory_store()
    try:
        async with wiring.api_client(settings) as http:
            specs = {spec.name: spec for spec in source_specs(settings)}
            source = wiring.build_source(settings, wiring.ApiAccess(http), name=source_name)
            spec = specs[source_name] if source_name else next(iter(specs.values()))
            poller: Poller = wiring.build_poller(source, store, settings, spec=spec, role=wiring.Role(models=ids))
            outcome = WaitOutcome(statuses={})
            failing: str | None = None
            while True:
                try:
                    result = await poller.cycle()
                except AuthRefusedError:
                    raise
                except SourceError as exc:
                    if str(exc) != failing:  # once per kind of failure, not every poll
                        print(f"ftwatch: the API failed: {exc}; retrying every {interval_s:g}s", file=sys.stderr)
                        failing = str(exc)
                else:
                    failing = None
                    if result.not_found:
                        raise ConfigError(
                            f"model {', '.join(result.not_found)} not found: check the id with 'ftwatch models'"
                        )
                    for transition in result.transitions:
                        outcome.transitions.append(transition)
                        if on_transition is not None:
                            on_transition(transition)
                    for model_id, info in result.statuses.items():
                        outcome.statuses[model_id] = info.status
                        outcome.states[model_id] = poller.source.vocabulary.state_of(info.status)
                    if len(outcome.statuses) == len(ids) and _judge(outcome, until):
                        return outcome
                await anyio.sleep(interval_s)
    finally:
        store.close()


def run_wait(settings: Settings, args: argparse.Namespace) -> int:
    output = "jsonl" if args.json else args.output or "text"
    seen: list[dict[str, object]] = []

    def show(transition: Transition) -> None:
        # As they happen for text and JSON lines; json and yaml are one document at the end.
        if output == "jsonl":
            print(json.dumps(transition.to_payload(), separators=(",", ":")), flush=True)
        elif output in ("text", "wide"):
            lead = f"{transition.source}  {transition.provider}  " if output == "wide" else ""
            print(lead + text_line(transition), flush=True)
        else:
            seen.append(transition.to_payload())

    try:
        return _wait(settings, args, show)
    finally:
        if output in ("json", "yaml"):
            emit(seen, output, lambda wide: None)


def _wait(settings: Settings, args: argparse.Namespace, show: Callable[[Transition], None]) -> int:
    until = Until(args.until)
    interval = args.interval or DEFAULT_INTERVAL_S
    try:
        outcome = anyio.run(
            lambda: wait_for(
                args.model_ids,
                until=until,
                timeout_s=args.timeout,
                interval_s=interval,
                settings=settings,
                on_transition=show,
                source=args.source,
            )
        )
    except TimeoutError:
        print(f"ftwatch: timed out after {args.timeout:g}s waiting for {until.value}", file=sys.stderr)
        return TIMEOUT_EXIT
    if outcome.ok:
        print(f"ftwatch: {plural(len(outcome.statuses), 'model')} {until.value}", file=sys.stderr)
        return 0
    model_id = outcome.stopped_by or "?"
    print(
        f"ftwatch: {model_id} {reached(outcome.statuses.get(model_id))}, not {until.value}: stopped waiting",
        file=sys.stderr,
    )
    return 1
