"""``ftwatch demo`` and ``ftwatch simulate``: the simulated APIs, watched or driven.

No key and no network: the simulators (:mod:`ftwatch.sim`) listen on 127.0.0.1.
``demo`` moves a few jobs through their statuses on a schedule and watches them: in
a terminal with the live view of ``ftwatch watch``, in a pipe with the same daemon
``ftwatch run`` starts, printing each transition. ``simulate`` only serves them and
says how to point a configuration at each, for a user's own config and notifiers;
the jobs move when the user says (:mod:`ftwatch.app.simulate`). This is the one
module of the application that imports the simulators.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from ftwatch.settings import Settings
from ftwatch.sim import PROVIDERS, SimulatedProvider, simulator
from ftwatch.statuses import BUILT_IN

__all__ = ["PROVIDERS", "SCRIPT", "SEED", "SimWorld", "demo_world", "simulated_world"]

#: The jobs that exist before the watcher starts: (provider, name, status).
SEED: tuple[tuple[str, str, str], ...] = (
    ("cohere", "support-classifier", "STATUS_QUEUED"),
    ("cohere", "summarizer-v2", "STATUS_FINETUNING"),
    ("cohere", "legal-chat", "STATUS_READY"),
    ("openai", "faq-bot", "queued"),
    ("openai", "intent-v3", "succeeded"),
    ("azure_openai", "contoso-support", "pending"),
    ("bedrock", "titan-claims", "InProgress"),
    ("bedrock", "titan-tickets", "InProgress"),
    ("vertex", "gemini-claims", "JOB_STATE_PENDING"),
    ("together", "llama-support", "pending"),
    ("fireworks", "mixtral-routing", "JOB_STATE_PENDING"),
)

#: (seconds after start, provider, job name, new status). New jobs appear at 9 s.
SCRIPT: tuple[tuple[float, str, str, str], ...] = (
    (1.5, "cohere", "support-classifier", "STATUS_FINETUNING"),
    (2.0, "openai", "faq-bot", "running"),
    (2.5, "bedrock", "titan-claims", "Completed"),
    (2.8, "azure_openai", "contoso-support", "running"),
    (3.0, "cohere", "summarizer-v2", "STATUS_FAILED"),
    (3.2, "vertex", "gemini-claims", "JOB_STATE_RUNNING"),
    (3.5, "together", "llama-support", "running"),
    (4.0, "fireworks", "mixtral-routing", "JOB_STATE_RUNNING"),
    (4.5, "cohere", "support-classifier", "STATUS_DEPLOYING_API"),
    (5.0, "openai", "faq-bot", "succeeded"),
    (6.0, "cohere", "support-classifier", "STATUS_READY"),
    (7.0, "bedrock", "titan-tickets", "Stopping"),
    (7.5, "cohere", "legal-chat", "STATUS_PAUSED"),
    (8.0, "together", "llama-support", "completed"),
    (8.5, "bedrock", "titan-tickets", "Stopped"),
    (9.0, "cohere", "ner-tagger", "STATUS_QUEUED"),
    (9.5, "openai", "triage", "validating_files"),
    (9.8, "azure_openai", "contoso-support", "succeeded"),
    (10.0, "fireworks", "mixtral-routing", "JOB_STATE_COMPLETED"),
    (10.2, "vertex", "gemini-claims", "JOB_STATE_SUCCEEDED"),
    (10.5, "cohere", "ner-tagger", "STATUS_FINETUNING"),
    (11.0, "openai", "triage", "running"),
    (12.0, "cohere", "legal-chat", "STATUS_READY"),
    (13.0, "openai", "triage", "failed"),
    (13.5, "cohere", "ner-tagger", "STATUS_FAILED"),
)


class SimWorld:
    """Serving simulators, one per provider, and their jobs by (provider, name)."""

    def __init__(self, providers: Sequence[str]) -> None:
        self.sims: dict[str, SimulatedProvider] = {provider: simulator(provider) for provider in providers}
        self.ids: dict[tuple[str, str], str] = {}

    def move(self, provider: str, name: str, status: str) -> str:
        """Move the job named ``name`` to ``status``, creating it if it is new;
        returns its id. :class:`KeyError` for a provider not simulated here."""
        sim = self.sims[provider]
        key = (provider, name)
        if key not in self.ids:
            self.ids[key] = sim.add_job(name, status)
        else:
            sim.set_status(self.ids[key], status)
        return self.ids[key]

    def seed(self) -> None:
        for provider, name, status in SEED:
            if provider in self.sims:
                self.move(provider, name, status)

    def sources(self, *, to_their_limit: bool = False, **extra: Any) -> list[dict[str, Any]]:
        """The ``[[sources]]`` tables that watch them; ``to_their_limit``: each with a
        budget of all its simulator answers (a provider's default would not do for
        the demo's half-second interval: Bedrock's 120 a minute is one request a
        cycle, and the poller would stretch its cycles and warn of it)."""
        if not to_their_limit:
            return [sim.source_table(**extra) for sim in self.sims.values()]
        return [
            sim.source_table(**extra, max_requests_per_minute=sim.rate_limit_per_minute) for sim in self.sims.values()
        ]

    def credentials_env(self, tmp: Path) -> dict[str, str]:
        return {name: value for sim in self.sims.values() for name, value in sim.credentials_env(tmp).items()}


#: Providers whose client needs an extra: the module it brings, and the extra's name.
_NEEDS = {"bedrock": ("botocore", "bedrock"), "vertex": ("google.auth", "vertex")}
#: How the demo names each provider.
_NAMES = {
    "cohere": "Cohere",
    "openai": "OpenAI",
    "azure_openai": "Azure OpenAI",
    "bedrock": "Bedrock",
    "vertex": "Vertex AI",
    "together": "Together",
    "fireworks": "Fireworks",
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent is missing
        return False


def _with_clients() -> list[str]:
    """The providers whose client is installed (Bedrock's needs botocore, Vertex's
    google-auth)."""
    return [p for p in PROVIDERS if p not in _NEEDS or _installed(_NEEDS[p][0])]


@contextlib.asynccontextmanager
async def simulated_world(providers: Sequence[str], *, seed: bool = True, port: int = 0) -> AsyncIterator[SimWorld]:
    """The simulators of ``providers`` serving on 127.0.0.1 until the block ends, on
    ``port`` and the ports after it (0: free ones)."""
    world = SimWorld(providers)
    async with anyio.create_task_group() as group:
        for index, sim in enumerate(world.sims.values()):
            await group.start(sim.serve, "127.0.0.1", port + index if port else 0)
        if seed:
            world.seed()
        yield world
        group.cancel_scope.cancel()


async def _play(world: SimWorld) -> None:
    started = anyio.current_time()
    for at, provider, name, status in SCRIPT:
        await anyio.sleep(max(0.0, started + at - anyio.current_time()))
        if provider in world.sims:
            world.move(provider, name, status)


async def _train(world: SimWorld, every_s: float = 0.5) -> None:
    """Every running job of a provider that tells progress trains a few steps a tick,
    so the view's bars move."""
    steps: dict[str, int] = {}
    while True:
        await anyio.sleep(every_s)
        for provider, sim in world.sims.items():
            if not sim.tells_progress:
                continue
            words = BUILT_IN[provider]
            for job_id, (_, status) in sim.jobs().items():
                if words.state_of(status) == "running":
                    steps[job_id] = min(steps.get(job_id, 0) + 7, 100)
                    sim.train(job_id, steps[job_id], 100)


@contextlib.asynccontextmanager
async def demo_world(duration_s: float) -> AsyncIterator[Settings]:
    """The simulated APIs with jobs that move on a schedule, and the settings that
    watch them (a state file, a stdout notifier), until the block ends. What watches
    them is the caller's choice: the live view or the daemon."""
    providers = _with_clients()
    with tempfile.TemporaryDirectory(prefix="ftwatch-demo-") as tmp:
        async with simulated_world(providers) as world:
            # The simulators' own keys, where a user's would be: this process talks
            # to nothing else, so a real key in the environment is never sent.
            os.environ.update(world.credentials_env(Path(tmp)))
            settings = Settings.model_validate(
                {
                    "sources": world.sources(to_their_limit=True, retry_initial_s=0.1),
                    "poll": {"interval_s": 0.5},
                    "state": {"path": Path(tmp) / "state.db"},
                    "http": {"listen": ""},
                    "notifiers": [{"type": "stdout", "format": "text"}],
                }
            )
            missing = [p for p in _NEEDS if p not in providers]
            extras = ",".join(_NEEDS[p][1] for p in missing)
            note = (
                f" ({' and '.join(_NAMES[p] for p in missing)} too: pip install 'ftwatch[{extras}]')" if missing else ""
            )
            names = [_NAMES.get(p, p) for p in providers]
            print(
                f"ftwatch demo: simulated {', '.join(names[:-1])} and {names[-1]} APIs on 127.0.0.1"
                f" with {len(world.ids)} models and jobs; watching for {duration_s:g}s (Ctrl-C stops){note}",
                file=sys.stderr,
            )
            async with anyio.create_task_group() as group:
                group.start_soon(_play, world)
                group.start_soon(_train, world)
                yield settings
                group.cancel_scope.cancel()
