"""One exception tree: every error ftwatch raises to a caller is an FtwatchError, and
the diagram in ``ftwatch.errors`` shows each one under its parent."""

from __future__ import annotations

import re

from ftwatch import errors


def _classes() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == errors.__name__
    }


def test_every_error_is_under_the_root() -> None:
    assert all(issubclass(cls, errors.FtwatchError) for cls in _classes().values())


def test_the_diagram_draws_the_tree_as_it_is() -> None:
    doc = errors.__doc__ or ""
    drawn: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^(\s*(?:[│ ]\s*)*(?:[├└]── )?)(\w+Error)\b", line)
        if match is None:
            continue
        depth, name = len(match.group(1)), match.group(2)
        while parents and parents[-1][0] >= depth:
            parents.pop()
        drawn[name] = parents[-1][1] if parents else ""
        parents.append((depth, name))
    classes = _classes()
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        base = classes[name].__bases__[0].__name__
        assert (parent or "Exception") == base, f"{name} is drawn under {parent!r}, but is a {base}"
