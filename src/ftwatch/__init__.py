"""ftwatch: watch Cohere fine-tuned models and tell people when one changes status."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ftwatch.model import Event, ModelInfo, Transition
from ftwatch.notifiers.base import DeliveryFailedError, Notifier, NotifierConfig, NotifierContext

try:
    __version__ = version("ftwatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DeliveryFailedError",
    "Event",
    "ModelInfo",
    "Notifier",
    "NotifierConfig",
    "NotifierContext",
    "Transition",
    "__version__",
]
