"""Finding notifier types by entry point, validating their tables, building them.

Built-ins register in the entry-point group ``ftwatch.notifiers`` like any plug-in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError

from ftwatch import plugins
from ftwatch.errors import ConfigError, first_problem
from ftwatch.notifiers.base import Notifier, NotifierConfig, NotifierContext, NotifierType

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadedNotifier",
    "available_types",
    "build_notifiers",
    "notifier_type",
    "validate_notifiers",
]

ENTRY_POINT_GROUP = plugins.NOTIFIERS


@dataclass(frozen=True, slots=True)
class LoadedNotifier:
    """A configured notifier with its outbox key and filters."""

    key: str
    config: NotifierConfig
    notifier: Notifier


def notifier_type(name: str) -> NotifierType:
    """One installed type, imported when first needed (a start loads only what is configured)."""
    return cast(NotifierType, plugins.load(ENTRY_POINT_GROUP, name))


def available_types() -> dict[str, NotifierType]:
    """Every notifier type installed, built-ins included, by ``type`` name."""
    return {name: notifier_type(name) for name in plugins.installed(ENTRY_POINT_GROUP)}


def _location(index: int, kind: object) -> str:
    return f"notifiers[{index}] ({kind if isinstance(kind, str) and kind else 'no type'})"


def validate_notifiers(raw_list: Sequence[Mapping[str, Any] | NotifierConfig]) -> list[NotifierConfig]:
    """Each ``[[notifiers]]`` table as its type's typed config; :class:`ConfigError` if not."""
    installed = plugins.installed(ENTRY_POINT_GROUP)
    validated: list[NotifierConfig] = []
    for index, raw in enumerate(raw_list):
        if isinstance(raw, NotifierConfig):  # already typed (settings built in code)
            validated.append(raw)
            continue
        kind = raw.get("type") if isinstance(raw, Mapping) else None
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f'notifiers[{index}] has no type: add type = "webhook", "slack", "stdout" or "apprise"')
        if kind not in installed:
            raise ConfigError(f"notifiers[{index}]: {plugins.unknown(ENTRY_POINT_GROUP, kind)}")
        try:
            validated.append(notifier_type(kind).config_model.model_validate(dict(raw)))
        except ValidationError as exc:
            loc, msg, _ = first_problem(exc)
            where = "." + ".".join(str(p) for p in loc) if loc else ""
            raise ConfigError(f"invalid configuration: {_location(index, kind)}{where}: {msg}") from None
    return validated


def build_notifiers(configs: Sequence[NotifierConfig], context: NotifierContext) -> list[LoadedNotifier]:
    """Create the configured notifiers, each with a stable outbox key. What only building
    can tell (a secret file, an optional package) is a :class:`ConfigError` here."""
    loaded: list[LoadedNotifier] = []
    keys: set[str] = set()
    for index, config in enumerate(configs):
        try:
            notifier = notifier_type(config.type).from_config(config, context)
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"invalid configuration: {_location(index, config.type)}: {exc}") from None
        digest = hashlib.sha256(notifier.identity.encode()).hexdigest()[:12]
        key = config.name or f"{config.type}-{digest}"
        base, n = key, 2
        while key in keys:  # the same destination twice: two queues, in config order
            key, n = f"{base}-{n}", n + 1
        keys.add(key)
        loaded.append(LoadedNotifier(key=key, config=config, notifier=notifier))
    return loaded
