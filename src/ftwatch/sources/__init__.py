"""Sources: the protocol, the providers, and each provider's simulator beside it."""

from __future__ import annotations

from ftwatch.sources.base import (
    ApiWait,
    ModelDataError,
    ModelNotFoundError,
    RequestDone,
    Source,
    SourceContext,
    SourceError,
    SourceType,
    SourceUnavailableError,
)

__all__ = [
    "ApiWait",
    "ModelDataError",
    "ModelNotFoundError",
    "RequestDone",
    "Source",
    "SourceContext",
    "SourceError",
    "SourceType",
    "SourceUnavailableError",
]
