"""One provider's simulator and how ftwatch is pointed at it, the same shape for all
three, so end-to-end tests can be parametrized over providers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftwatch.sources import bedrock_sim, cohere_sim, openai_sim
from ftwatch.sources.bedrock_sim import BedrockSimulator
from ftwatch.sources.cohere_sim import Simulator
from ftwatch.sources.openai_sim import OpenAISimulator
from ftwatch.sources.simkit import SimServer, running_in_thread

PROVIDERS = ("cohere", "openai", "bedrock")

#: Each provider's lifecycle, first status to a good end, and its failure word.
LIFECYCLES: dict[str, tuple[str, ...]] = {
    "cohere": ("STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_READY"),
    "openai": ("queued", "running", "succeeded"),
    "bedrock": ("InProgress", "Stopping", "Completed"),
}
FAILED = {"cohere": "STATUS_FAILED", "openai": "failed", "bedrock": "Failed"}


@dataclass
class World:
    """A running simulator of one provider."""

    provider: str
    sim: Any
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def server(self) -> SimServer:
        return self.sim  # type: ignore[no-any-return]

    def add(self, name: str, status: str | None = None) -> str:
        status = status or LIFECYCLES[self.provider][0]
        if self.provider == "cohere":
            model_id = self.sim.add_model(name, status)
        elif self.provider == "openai":
            model_id = self.sim.add_job(name, status)
        else:
            model_id = self.sim.add_job(name, status)
        self.ids[name] = model_id
        return str(model_id)

    def move(self, model_id: str, status: str) -> None:
        self.sim.set_status(model_id, status)

    def source(self, **extra: Any) -> dict[str, Any]:
        """The ``[[sources]]`` table that watches this simulator, with fast retries."""
        fast = {"retry_initial_s": 0.02, "retry_max_s": 0.2, "auth_retry_s": 0.5}
        if self.provider == "cohere":
            return {"type": "cohere", "base_url": self.sim.url} | fast | extra
        if self.provider == "openai":
            return {"type": "openai", "base_url": self.sim.url} | fast | extra
        return {"type": "bedrock", "endpoint_url": self.sim.url, "region": bedrock_sim.REGION} | fast | extra

    def credentials(self, tmp_path: Path) -> dict[str, str]:
        """The environment a user would set for this provider's key."""
        if self.provider == "cohere":
            return {"CO_API_KEY": cohere_sim.DEFAULT_KEY}
        if self.provider == "openai":
            return {"OPENAI_API_KEY": openai_sim.DEFAULT_KEY}
        return aws_env(tmp_path)

    def env(self, base: dict[str, str], tmp_path: Path, **extra: Any) -> dict[str, str]:
        """``base`` with this provider as the one source."""
        return base | self.credentials(tmp_path) | {"FTWATCH_SOURCES": json.dumps([self.source(**extra)])}


def aws_env(tmp_path: Path, secret: str = bedrock_sim.SECRET_KEY) -> dict[str, str]:
    """The simulator's keys through the standard chain's environment step; no
    profile files and no instance metadata (no network here)."""
    return {
        "AWS_ACCESS_KEY_ID": bedrock_sim.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }


def make_sim(provider: str, **options: Any) -> Any:
    if provider == "cohere":
        return Simulator(**options)
    if provider == "openai":
        return OpenAISimulator(**options)
    return BedrockSimulator(**options)


@contextlib.contextmanager
def world(provider: str, **options: Any) -> Iterator[World]:
    with running_in_thread(make_sim(provider, **options)) as sim:
        yield World(provider, sim)
