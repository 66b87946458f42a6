"""One provider's simulator and how ftwatch is pointed at it, the same shape for all
three, so end-to-end tests can be parametrized over providers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftwatch.sim import PROVIDERS, SimulatedProvider, simulator, simulator_type
from ftwatch.sim import bedrock as bedrock_sim
from ftwatch.sim.kit import SimServer, running_in_thread

__all__ = ["FAILED", "LIFECYCLES", "PROVIDERS", "World", "aws_env", "make_sim", "world"]

#: Each provider's lifecycle, first status to a good end, and its failure word.
LIFECYCLES: dict[str, tuple[str, ...]] = {p: simulator_type(p).lifecycle for p in PROVIDERS}
FAILED = {p: simulator_type(p).failed_status for p in PROVIDERS}


@dataclass
class World:
    """A running simulator of one provider."""

    provider: str
    sim: Any
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def server(self) -> SimServer:
        return self.sim  # type: ignore[no-any-return]

    @property
    def simulated(self) -> SimulatedProvider:
        return self.sim  # type: ignore[no-any-return]

    def add(self, name: str, status: str | None = None) -> str:
        model_id = self.simulated.add_job(name, status)
        self.ids[name] = model_id
        return model_id

    def move(self, model_id: str, status: str) -> None:
        self.simulated.set_status(model_id, status)

    def source(self, **extra: Any) -> dict[str, Any]:
        """The ``[[sources]]`` table that watches this simulator, with fast retries."""
        fast = {"retry_initial_s": 0.02, "retry_max_s": 0.2, "auth_retry_s": 0.5}
        return self.simulated.source_table(**fast, **extra)

    def credentials(self, tmp_path: Path) -> dict[str, str]:
        """The environment a user would set for this provider's key."""
        return self.simulated.credentials_env(tmp_path)

    def env(self, base: dict[str, str], tmp_path: Path, **extra: Any) -> dict[str, str]:
        """``base`` with this provider as the one source."""
        return base | self.credentials(tmp_path) | {"FTWATCH_SOURCES": json.dumps([self.source(**extra)])}


def aws_env(tmp_path: Path, secret: str = bedrock_sim.SECRET_KEY) -> dict[str, str]:
    """The Bedrock simulator's keys through the standard chain's environment step
    (``secret``: another one, to be refused)."""
    return bedrock_sim.BedrockSimulator().credentials_env(tmp_path) | {"AWS_SECRET_ACCESS_KEY": secret}


def make_sim(provider: str, **options: Any) -> Any:
    return simulator(provider, **options)


@contextlib.contextmanager
def world(provider: str, **options: Any) -> Iterator[World]:
    with running_in_thread(make_sim(provider, **options)) as sim:
        yield World(provider, sim)
