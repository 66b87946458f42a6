"""The command line's reference in Markdown, made from the parser itself (so it can
never say what the code does not): ``python -m ftwatch.app.clidoc > docs/cli.md``.
A test keeps the shipped page current."""

from __future__ import annotations

import argparse
import os

from ftwatch.app.cli import _parser

__all__ = ["commands_of", "markdown"]


def commands_of(parser: argparse.ArgumentParser, prefix: str = "ftwatch") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command and subcommand's parser, by its full name (``ftwatch outbox replay``)."""
    found = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands_of(sub, f"{prefix} {name}")
    return found


def markdown() -> str:
    """Every command's ``--help``, one section each, as a reader of the docs wants it."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to this: the same page on every machine
    lines = [
        "# Command-line reference",
        "",
        "Made from the parser (`python -m ftwatch.app.clidoc > docs/cli.md`); `ftwatch COMMAND --help` says the same.",
        "",
    ]
    for name, parser in commands_of(_parser(), "ftwatch"):
        lines += [f"## `{name}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
