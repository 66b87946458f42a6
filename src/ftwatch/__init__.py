"""ftwatch: watch fine-tuned models and tell people when one changes status.

The names plug-ins use (``ftwatch.Notifier``, ``ftwatch.Transition``, …) are imported
when first asked for, so ``import ftwatch`` (and ``ftwatch --version``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

try:  # written by the build (hatchling's version hook): no metadata lookup at start
    from ftwatch._version import __version__
except ImportError:  # a source tree that was never installed
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("ftwatch")
    except PackageNotFoundError:
        __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from ftwatch.app.wait import Until, WaitOutcome, wait_for
    from ftwatch.model import Event, ModelInfo, Transition
    from ftwatch.notifiers.base import DeliveryFailedError, Notifier, NotifierConfig, NotifierContext

__all__ = [
    "DeliveryFailedError",
    "Event",
    "ModelInfo",
    "Notifier",
    "NotifierConfig",
    "NotifierContext",
    "Transition",
    "Until",
    "WaitOutcome",
    "__version__",
    "wait_for",
]

_LAZY = {
    "Event": "ftwatch.model",
    "ModelInfo": "ftwatch.model",
    "Transition": "ftwatch.model",
    "DeliveryFailedError": "ftwatch.notifiers.base",
    "Notifier": "ftwatch.notifiers.base",
    "NotifierConfig": "ftwatch.notifiers.base",
    "NotifierContext": "ftwatch.notifiers.base",
    "Until": "ftwatch.app.wait",
    "WaitOutcome": "ftwatch.app.wait",
    "wait_for": "ftwatch.app.wait",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ftwatch' has no attribute {name!r}")
