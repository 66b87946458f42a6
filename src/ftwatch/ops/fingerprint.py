"""What a replica watches and tells, as one short digest: replicas on one database
must agree on it, or whoever leads decides what is watched.

Pure: the sources (name, type, models, whether pushes are taken) and the notifiers
(key, filters) in, twelve hex digits out. No secret goes in: a key rotated on one
replica first is no disagreement about what is watched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["NotifierShape", "SourceShape", "fingerprint"]


@dataclass(frozen=True, slots=True)
class SourceShape:
    name: str
    type: str
    models: tuple[str, ...]
    pushes: bool


@dataclass(frozen=True, slots=True)
class NotifierShape:
    key: str
    statuses: tuple[str, ...]
    models: tuple[str, ...]


def fingerprint(sources: Iterable[SourceShape], notifiers: Iterable[NotifierShape]) -> str:
    """The digest; the order of the config's tables does not matter, their content does."""
    document = {
        "sources": sorted([s.name, s.type, sorted(s.models), s.pushes] for s in sources),
        "notifiers": sorted([n.key, sorted(n.statuses), sorted(n.models)] for n in notifiers),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:12]
