"""Load httpx and structlog without the optional extras they would load for nothing.

httpx imports its own command line (click, pygments, rich) whenever click is installed,
httpcore its HTTP/2 client whenever h2 is (hypercorn brings it, for the server side),
and structlog imports rich, when installed, only to pick a default traceback formatter.
ftwatch uses none of them (its requests are HTTP/1.1, its log renderer names
``plain_traceback``), yet they cost about a fifth of a daemon's start. A ``None`` in
``sys.modules`` makes those optional imports fail as "not installed" for the moment
these libraries are first imported; afterwards the names are free again, so the live
view of ``watch`` imports rich, and hypercorn h2, as usual.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["import_core_libraries"]

#: The optional imports to skip, and the libraries that make them.
_EXTRAS = ("click", "rich", "pygments", "h2")
_LIBRARIES = ("httpx", "httpcore", "structlog")


@contextmanager
def _hidden(names: tuple[str, ...]) -> Iterator[None]:
    # A name already loaded (a test, a program embedding ftwatch) is left alone: hiding
    # it would only make the second importer think it absent.
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            del sys.modules[name]


def import_core_libraries() -> None:
    """Import httpx, httpcore and structlog now, without their optional extras."""
    if all(library in sys.modules for library in _LIBRARIES):
        return
    with _hidden(_EXTRAS):
        for library in _LIBRARIES:
            importlib.import_module(library)
