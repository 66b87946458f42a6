"""``ftwatch watch``: placeholder until the live view lands."""

from __future__ import annotations

import argparse

from ftwatch.errors import FtwatchError


def run_watch(args: argparse.Namespace) -> int:
    raise FtwatchError("ftwatch watch is not built yet")
