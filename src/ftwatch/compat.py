"""Every rule kept for what was there before sources existed, in one place.

ftwatch began as a watcher of one provider (Cohere), configured by ``[cohere]`` and
``[poll] models``, with bare model ids as its state's keys, bodies without the
snapshot providers' fields, and stall ids without a provider. Those shapes are a
contract with existing state files, outboxes and receivers, so they stay; the
engine asks these functions instead of naming the provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = [
    "LEGACY_PROVIDER",
    "UNSEEN_STATUS",
    "legacy_body",
    "meta_key",
    "model_key",
    "models_in",
    "namespace_for",
    "stall_subject",
]

#: The provider (and source name) of everything written before sources existed: an
#: outbox row without ``provider``, a body without ``source``, ``[cohere]``.
LEGACY_PROVIDER = "cohere"

#: The status of a model read alone whose status was never seen (the first
#: provider's word for "none yet"), until its events say one.
UNSEEN_STATUS = "STATUS_UNSPECIFIED"

_T = TypeVar("_T")


def legacy_body(provider: str) -> bool:
    """Whether a transition's body keeps the first provider's fields only (no
    ``fine_tuned_model`` or ``failure_message``: its receivers never had them)."""
    return provider == LEGACY_PROVIDER


def stall_subject(provider: str, model_id: str) -> str:
    """What a stall alert's id is made from: the model id alone for the first
    provider (its ids as they always were), provider and id for any other."""
    return model_id if provider == LEGACY_PROVIDER else f"{provider}\x1f{model_id}"


def namespace_for(source_type: str, name: str) -> str:
    """Where a source's models live in the state: under its name, but the first
    provider's source of the default name keeps the bare keys it had before
    ``[[sources]]`` existed."""
    return "" if (source_type, name) == (LEGACY_PROVIDER, LEGACY_PROVIDER) else name


def model_key(namespace: str, model_id: str) -> str:
    """A model's key in a state several sources share: ``openai/ftjob-1``; the
    legacy namespace ("") keeps bare ids."""
    return f"{namespace}/{model_id}" if namespace else model_id


def models_in(namespace: str, states: Mapping[str, _T]) -> dict[str, _T]:
    """One source's models, by their own ids. No id holds a ``/`` (an id is one path
    segment), so a bare key is always the legacy namespace's."""
    if not namespace:
        return {key: state for key, state in states.items() if "/" not in key}
    prefix = namespace + "/"
    return {key[len(prefix) :]: state for key, state in states.items() if key.startswith(prefix)}


def meta_key(name: str, namespace: str) -> str:
    """``baselined`` / ``scope`` of one source (the legacy namespace: as before)."""
    return f"{name}:{namespace}" if namespace else name
