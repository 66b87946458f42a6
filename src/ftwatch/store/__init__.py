"""The state: the :class:`Store` protocol and its SQLite implementation."""

from __future__ import annotations

from ftwatch.store.base import ModelState, Store, StoreError, StoreOpenError

__all__ = ["ModelState", "Store", "StoreError", "StoreOpenError"]
