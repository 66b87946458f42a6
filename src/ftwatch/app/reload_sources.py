"""What a reload does to the sources: pure, from the specs in force and the new ones.

A ``[[sources]]`` table added starts its poller, one removed stops its poller, one
changed (other than its ``models``, which its poller takes as it is) restarts it;
the others are left alone, mid-cycle or not. What a reload cannot apply is named
precisely, on every reload until a restart: a source's ``webhook`` (its route is
served by the HTTP server, built once), and the legacy ``[cohere]`` section (named
by the daemon's key diff, as before).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ftwatch.sources.base import SourceSpec

__all__ = ["SourcesPlan", "plan_sources"]

#: Keys a running poller takes without a restart, or that a restart of it cannot apply.
_NOT_THE_POLLERS = {"models", "webhook"}


@dataclass(frozen=True, slots=True)
class SourcesPlan:
    """The sources a reload starts (added), stops (removed) and restarts (changed),
    and what stays as it was until the process restarts (``sources[NAME].webhook``)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    restarted: tuple[str, ...]
    restart_needed: tuple[str, ...]

    @property
    def to_build(self) -> tuple[str, ...]:
        return self.added + self.restarted


def _pollers_part(config: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if k not in _NOT_THE_POLLERS}


def plan_sources(
    in_force: Mapping[str, Any], pushes_in_force: Mapping[str, Any], new: Sequence[SourceSpec], *, legacy: Any
) -> SourcesPlan:
    """``in_force``: each running source's config by name; ``pushes_in_force``: the
    webhook config each route was built with; ``legacy``: the ``[cohere]`` section
    (a source of that config is the daemon's key diff's business, not this plan's)."""
    names = [spec.name for spec in new]
    added = tuple(name for name in names if name not in in_force)
    removed = tuple(name for name in in_force if name not in names)
    restarted = tuple(
        spec.name
        for spec in new
        if spec.name in in_force
        and spec.config is not legacy
        and _pollers_part(spec.config) != _pollers_part(in_force[spec.name])
    )
    webhooks = {spec.name: spec.webhook for spec in new}
    restart_needed = tuple(
        f"sources[{name}].webhook"
        for name in sorted(webhooks.keys() | pushes_in_force.keys())
        if webhooks.get(name) != pushes_in_force.get(name)
    )
    return SourcesPlan(added, removed, restarted, restart_needed)
