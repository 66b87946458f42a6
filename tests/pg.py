"""A schema of its own on a PostgreSQL server, for a test or a benchmark run."""

from __future__ import annotations

import os
import time

#: The machines of this project run PostgreSQL here (trust auth); CI starts it.
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def new_schema(url: str, prefix: str) -> tuple[str, str]:
    """Create a schema no other run uses; its name, and the URL that works in it."""
    import psycopg  # noqa: PLC0415 - the optional extra

    name = f"{prefix}_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}".encode())
    return name, f"{url}?options=-csearch_path%3D{name}"
