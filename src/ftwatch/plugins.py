"""One registry of plug-ins by entry point: source types (``ftwatch.sources``) and
notifier types (``ftwatch.notifiers``), built-ins registered like any third party's.

A type is imported when first asked for, once (a start loads only what is
configured); an unknown one is one :class:`~ftwatch.errors.ConfigError` naming the
installed ones and how to add one, in the same words for both kinds.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ftwatch.errors import ConfigError

__all__ = ["NOTIFIERS", "SOURCES", "installed", "load", "unknown"]

SOURCES = "ftwatch.sources"
NOTIFIERS = "ftwatch.notifiers"

_KINDS = {SOURCES: "source", NOTIFIERS: "notifier"}


@functools.cache
def _entries(group: str) -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=group)}


def installed(group: str) -> list[str]:
    """The type names installed in ``group``, sorted."""
    return sorted(_entries(group))


@functools.cache
def load(group: str, name: str) -> Any:
    """The class registered as ``name`` in ``group``, imported on first use."""
    entries = _entries(group)
    if name not in entries:
        raise unknown(group, name)
    return entries[name].load()


def unknown(group: str, name: str) -> ConfigError:
    """The error for a type nobody installed."""
    kind = _KINDS.get(group, "plug-in")
    known = ", ".join(installed(group))
    return ConfigError(f"unknown {kind} type {name!r}; known: {known} (a plug-in must be installed to add one)")
