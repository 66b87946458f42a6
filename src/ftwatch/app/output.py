"""``-o/--output`` of the listing commands: one documented shape each, the same way
in every command (kubectl's and gh's convention).

- ``text``: a table (never cut: the tables are plain lines, whatever the width);
- ``wide``: the table with the source, provider and times too;
- ``json``: one JSON document (an array for lists, an object for ``status``);
- ``jsonl``: one JSON object a line;
- ``yaml``: the ``json`` document as YAML (PyYAML, loaded only for it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["FORMATS", "emit", "table"]

FORMATS = ("text", "wide", "json", "jsonl", "yaml")


def emit(document: list[dict[str, Any]] | dict[str, Any], fmt: str, text: Callable[[bool], None]) -> None:
    """Print ``document`` in ``fmt``; ``text(wide)`` prints the table forms."""
    if fmt in ("text", "wide"):
        text(fmt == "wide")
    elif fmt == "json":
        print(json.dumps(document, indent=2))
    elif fmt == "jsonl":
        for row in document if isinstance(document, list) else [document]:
            print(json.dumps(row, separators=(",", ":")))
    elif fmt == "yaml":
        import yaml  # noqa: PLC0415 - only for -o yaml

        print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")
    else:
        raise ValueError(f"no output format {fmt!r}")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; cells escaped (they hold outside text)."""
    from ftwatch.textsafe import printable  # noqa: PLC0415

    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(header[i])] + [len(row[i]) for row in cells]) for i in range(len(header))]
    for row in [list(header), *cells]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
