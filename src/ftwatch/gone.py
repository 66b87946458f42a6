"""Jobs that left the list: pure, like the differs.

A known job missing from a full listing is gone from the API (deleted, aged out): it
is marked once, kept, and counted apart; a gone one the list shows again is back.
Only a full listing says so: a cycle that asked each model alone knows nothing of
the others.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from ftwatch.model import format_timestamp
from ftwatch.state import ModelState

__all__ = ["GoneMarks", "mark_gone"]


@dataclass(frozen=True, slots=True)
class GoneMarks:
    """The rows to commit, and which models went and came back."""

    changed: dict[str, ModelState]
    gone: tuple[str, ...]
    back: tuple[str, ...]


def mark_gone(
    state: Mapping[str, ModelState],
    changed: Mapping[str, ModelState],
    listed: Collection[str],
    models: Collection[str],
    now_ns: int,
) -> GoneMarks:
    """``changed`` with the gone marks of this listing (``listed``: the ids it showed;
    ``models``: the configured ids, empty for all)."""
    out = dict(changed)
    gone: list[str] = []
    back: list[str] = []
    for model_id, old in state.items():
        current = out.get(model_id, old)
        if model_id in listed:
            if current.gone is not None:
                back.append(model_id)
                out[model_id] = replace(current, gone=None)
        elif old.gone is None and (not models or model_id in models):
            gone.append(model_id)
            out[model_id] = replace(current, gone=format_timestamp(now_ns, 3))
    return GoneMarks(out, tuple(gone), tuple(back))
