"""Finding source types by entry point (``ftwatch.sources``), like notifiers."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import cast

from ftwatch.errors import ConfigError
from ftwatch.sources.base import SourceType

__all__ = ["ENTRY_POINT_GROUP", "available_types", "source_type"]

ENTRY_POINT_GROUP = "ftwatch.sources"


@functools.cache
def available_types() -> dict[str, SourceType]:
    """Every source type installed, Cohere included, by ``type`` name."""
    return {entry.name: cast(SourceType, entry.load()) for entry in entry_points(group=ENTRY_POINT_GROUP)}


def source_type(name: str) -> SourceType:
    types = available_types()
    if name not in types:
        raise ConfigError(f"unknown source type {name!r}; known: {', '.join(sorted(types))} (a plug-in adds one)")
    return types[name]
