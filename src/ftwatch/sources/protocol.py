"""The contract between the engine and a fine-tuning provider.

A source is anything with these attributes and three coroutines, found by
``isinstance`` against runtime-checkable protocols, never by probing for names
(the way httpx's ``AsyncBaseTransport`` is the whole of what a client needs of its
backend). What a provider can do beyond listing is a capability protocol of its
own, declared by implementing it:

- :class:`ChecksCredentials`: its credentials can be resolved before anything
  starts (exit 2 at once when missing, not at the first cycle);
- :class:`TakesPushes`: its configuration has a ``webhook`` table, and the
  daemon's push endpoint accepts the provider's signed events for it;
- :class:`ReadsProgress`: its running jobs' progress takes a read of its own.

Progress that a provider's list tells (``ModelInfo.progress``) or that comes with
a status step (``Event.progress``) needs no capability: it is read with them.

Two kinds of source exist. A **history** source (:attr:`SourceKind.HISTORY`) lists
each model with when it last changed and keeps a dated event history per model: what
happened is read from the history (:mod:`ftwatch.diff`). A **snapshot** source lists
each job's status as it is now; a history, where the provider keeps one, only fills
in the steps between two polls (:mod:`ftwatch.snapshot`).

A source brings its own :class:`~ftwatch.statuses.Vocabulary`: its words and the
normalized state of each, which every body's ``state`` is made from.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, runtime_checkable

from ftwatch.model import Event, ModelInfo, ModelListing, Progress
from ftwatch.statuses import Vocabulary

__all__ = ["ChecksCredentials", "ReadsProgress", "Source", "SourceKind", "TakesPushes"]


class SourceKind(enum.StrEnum):
    """How a source's list says what changed."""

    HISTORY = "history"
    SNAPSHOT = "snapshot"


@runtime_checkable
class Source(Protocol):
    """What the engine needs of a fine-tuning provider."""

    #: The bodies' ``provider``: the API's word (``openai``).
    provider: str
    kind: SourceKind
    vocabulary: Vocabulary

    async def list_models(self) -> ModelListing:
        """Every fine-tuned model (job) visible to the credentials."""
        ...

    async def get_model(self, model_id: str) -> ModelInfo: ...

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        """The model's events; with ``newer_than_ns`` at least those at or after it."""
        ...


@runtime_checkable
class ChecksCredentials(Protocol):
    """A source whose credentials can be resolved up front (blocking; raises
    :class:`~ftwatch.errors.ConfigError` naming what is missing)."""

    def check_credentials(self) -> None: ...


@runtime_checkable
class TakesPushes(Protocol):
    """A source configuration with a ``webhook`` table (``None``: no pushes)."""

    webhook: Any


@runtime_checkable
class ReadsProgress(Protocol):
    """A source whose running jobs tell their progress only in a read of their own
    (OpenAI's and Azure's metrics events), not in the list: one request per
    running job and cycle, planned within ``[poll] budget_per_cycle``."""

    async def read_progress(self, model_id: str) -> Progress | None: ...
