"""Simulated fine-tuning APIs: real HTTP on 127.0.0.1, each faithful to its
provider's quirks, with faults injected on demand.

They serve ``ftwatch demo``, ``ftwatch simulate``, the tests and the benchmarks, all
through one :class:`SimulatedProvider` interface (add a job, move it, the
``[[sources]]`` table that watches it, the key a user would set), so none of them
says "if cohere … elif openai …". They depend on no part of the daemon: only the
plain data of :mod:`ftwatch.model`, the serving helper and the webhook signature.
Each provider's simulator is imported when first asked for (one cached loader, as
anyio loads its backends), so the daemon never loads them.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

__all__ = ["PROVIDERS", "SimulatedProvider", "simulator", "simulator_type"]

#: Each simulated provider, by the ``type`` of the source that watches it, and its class.
_CLASSES = {
    "cohere": "CohereSimulator",
    "openai": "OpenAISimulator",
    "azure_openai": "AzureOpenAISimulator",
    "bedrock": "BedrockSimulator",
    "vertex": "VertexSimulator",
    "together": "TogetherSimulator",
    "fireworks": "FireworksSimulator",
}
PROVIDERS: tuple[str, ...] = tuple(_CLASSES)


class SimulatedProvider(Protocol):
    """What every simulator offers whoever drives it."""

    provider: ClassVar[str]
    #: Its statuses from the first to a good end, and its word for a failure.
    lifecycle: ClassVar[tuple[str, ...]]
    failed_status: ClassVar[str]
    #: Its base URL once serving ("" before).
    url: str
    #: The requests a minute it answers for one key before it says 429.
    rate_limit_per_minute: int

    def add_job(self, name: str, status: str | None = None) -> str:
        """A new job (model) named ``name``; returns its id."""
        ...

    def set_status(self, job_id: str, status: str) -> Any: ...

    #: Where it tells a running job's progress ("list", "events", "end" or "").
    tells_progress: ClassVar[str]

    def train(self, job_id: str, step: int, total: int = 100) -> None:
        """The job reports training step ``step`` of ``total``, as the provider would."""
        ...

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Every job: id -> (name, status)."""
        ...

    def source_table(self, **extra: Any) -> dict[str, Any]:
        """The ``[[sources]]`` table that watches it."""
        ...

    def credentials_env(self, tmp: Path) -> dict[str, str]:
        """The environment a user would set for its key."""
        ...

    async def serve(self, host: str = ..., port: int = ..., *, task_status: TaskStatus[str] = ...) -> None: ...


@functools.cache
def simulator_type(provider: str) -> type[SimulatedProvider]:
    """The simulator class of ``provider`` (:class:`KeyError` naming the known ones)."""
    if provider not in _CLASSES:
        raise KeyError(f"no simulator of {provider!r}; simulated: {', '.join(PROVIDERS)}")
    module = importlib.import_module(f"ftwatch.sim.{provider}")
    cls: type[SimulatedProvider] = getattr(module, _CLASSES[provider])
    return cls


def simulator(provider: str, **options: Any) -> SimulatedProvider:
    """A new simulator of ``provider`` (not serving yet)."""
    return simulator_type(provider)(**options)
