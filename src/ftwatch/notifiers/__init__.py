"""Notifiers: the protocol, the built-ins, and finding plug-ins by entry point."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, cast

from pydantic import ValidationError

from ftwatch.errors import ConfigError
from ftwatch.notifiers.base import (
    DeliveryFailedError,
    Notifier,
    NotifierConfig,
    NotifierContext,
    NotifierType,
)

__all__ = [
    "DeliveryFailedError",
    "LoadedNotifier",
    "Notifier",
    "NotifierConfig",
    "NotifierContext",
    "NotifierType",
    "available_types",
    "build_notifiers",
    "validate_notifiers",
]

ENTRY_POINT_GROUP = "ftwatch.notifiers"


@dataclass(frozen=True, slots=True)
class LoadedNotifier:
    """A configured notifier with its outbox key and filters."""

    key: str
    config: NotifierConfig
    notifier: Notifier


def available_types() -> dict[str, NotifierType]:
    """Every notifier type installed, built-ins included, by ``type`` name."""
    types: dict[str, NotifierType] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        types[entry.name] = cast(NotifierType, entry.load())
    return types


def _location(index: int, raw: Mapping[str, Any]) -> str:
    return f"notifiers[{index}] ({raw.get('type', 'no type')})"


def validate_notifiers(raw_list: Sequence[Mapping[str, Any]]) -> list[tuple[NotifierType, NotifierConfig]]:
    """Check every ``[[notifiers]]`` table against its type's model; ConfigError if not."""
    types = available_types()
    validated = []
    for index, raw in enumerate(raw_list):
        kind = raw.get("type")
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f'notifiers[{index}] has no type: add type = "webhook", "slack", "stdout" or "apprise"')
        if kind not in types:
            known = ", ".join(sorted(types))
            raise ConfigError(
                f"notifiers[{index}]: unknown notifier type {kind!r}; known: {known}"
                " (a plug-in must be installed to add one)"
            )
        try:
            config = types[kind].config_model.model_validate(dict(raw))
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            loc = ".".join(str(p) for p in first["loc"])
            where = f".{loc}" if loc else ""
            msg = first["msg"].removeprefix("Value error, ")
            raise ConfigError(f"invalid configuration: {_location(index, raw)}{where}: {msg}") from None
        validated.append((types[kind], config))
    return validated


def build_notifiers(raw_list: Sequence[Mapping[str, Any]], context: NotifierContext) -> list[LoadedNotifier]:
    """Validate and create the configured notifiers, each with a stable outbox key."""
    loaded: list[LoadedNotifier] = []
    keys: set[str] = set()
    for kind, config in validate_notifiers(raw_list):
        notifier = kind.from_config(config, context)
        digest = hashlib.sha256(notifier.identity.encode()).hexdigest()[:12]
        key = config.name or f"{config.type}-{digest}"
        base, n = key, 2
        while key in keys:  # the same destination twice: two queues, in config order
            key, n = f"{base}-{n}", n + 1
        keys.add(key)
        loaded.append(LoadedNotifier(key=key, config=config, notifier=notifier))
    return loaded
