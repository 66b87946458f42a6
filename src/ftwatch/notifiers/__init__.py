"""Notifiers: the protocol, the built-ins, and finding plug-ins by entry point."""

from __future__ import annotations

from ftwatch.notifiers.base import (
    DeliveryFailedError,
    Notifier,
    NotifierConfig,
    NotifierContext,
    NotifierType,
)
from ftwatch.notifiers.registry import LoadedNotifier, available_types, build_notifiers, validate_notifiers

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
