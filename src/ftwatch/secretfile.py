"""Secrets kept in files: a mounted Kubernetes Secret, a systemd credential, a
``*_file`` setting. Read whole, stripped, never empty."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

__all__ = ["read_secret"]


def read_secret(path: Path) -> SecretStr:
    """The file's content as a secret; :class:`ValueError` saying why it cannot be."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ValueError(f"{path} is empty")
    return SecretStr(value)
