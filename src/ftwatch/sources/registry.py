"""Finding source types by entry point (``ftwatch.sources``), like notifiers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from ftwatch import plugins
from ftwatch.errors import ConfigError, first_problem
from ftwatch.sources.base import SourceConfig, SourceType

__all__ = ["ENTRY_POINT_GROUP", "available_types", "source_type", "validate_sources"]

ENTRY_POINT_GROUP = plugins.SOURCES


def available_types() -> dict[str, SourceType]:
    """Every source type installed, the built-ins included, by ``type`` name."""
    return {name: source_type(name) for name in plugins.installed(ENTRY_POINT_GROUP)}


def source_type(name: str) -> SourceType:
    """One installed type, imported when first needed (a start loads only what is configured)."""
    return cast(SourceType, plugins.load(ENTRY_POINT_GROUP, name))


def validate_sources(raw_list: Sequence[Mapping[str, Any] | BaseModel]) -> list[BaseModel]:
    """Each ``[[sources]]`` table as its type's config; :class:`ConfigError` naming the
    table and the fix if not, or if two sources share a name."""
    validated: list[BaseModel] = []
    names: set[str] = set()
    for index, raw in enumerate(raw_list):
        if isinstance(raw, BaseModel):
            config = raw
        else:
            kind = raw.get("type") if isinstance(raw, Mapping) else None
            if not isinstance(kind, str) or not kind:
                raise ConfigError(
                    f'invalid configuration: sources[{index}] has no type: add type = "cohere", "openai" or "bedrock"'
                )
            try:
                config = source_type(kind).config_model.model_validate(dict(raw))
            except ConfigError as exc:
                raise ConfigError(f"invalid configuration: sources[{index}]: {exc}") from None
            except ValidationError as exc:
                loc, msg, _ = first_problem(exc)
                where = "." + ".".join(str(p) for p in loc) if loc else ""
                raise ConfigError(f"invalid configuration: sources[{index}] ({kind}){where}: {msg}") from None
        name = config.name or config.type if isinstance(config, SourceConfig) else "?"
        if name in names:
            raise ConfigError(
                f"invalid configuration: sources[{index}]: a second source named {name!r}:"
                ' give each a unique name = "..."'
            )
        names.add(name)
        validated.append(config)
    return validated
