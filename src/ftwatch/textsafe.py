"""Text from outside (an API, a receiver) made safe to show a person. Pure.

A model's name, a status word, a receiver's error body: data, never markup and never
terminal control. :func:`printable` escapes C0 and C1 controls (ESC, OSC, BEL, CR)
and the bidirectional overrides that reorder what a line seems to say, as visible
``\\x1b`` / ``\\u202e`` sequences; :func:`one_line` folds a multi-line text into its
first line; :func:`failure_text` is the bounded form a failure's reason travels in
(bodies, Slack, the outbox).
"""

from __future__ import annotations

import re

__all__ = ["FAILURE_MAX", "failure_text", "one_line", "printable"]

#: The most of a failure's reason kept: enough for any real one.
FAILURE_MAX = 2048

# C0 (but not the space), DEL, C1; the bidi embeddings, overrides and isolates; and
# the line and paragraph separators, which some terminals and viewers break on.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_SPACE_LIKE = re.compile("[\t\r\n\v\f\u2028\u2029]+")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control and bidi override shown as an escape."""
    return _UNSAFE.sub(_escape, text)


def one_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of ``text``, made printable, at most ``limit`` long."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return _cut(printable(first), limit)


def failure_text(text: str | None, limit: int = FAILURE_MAX) -> str | None:
    """A failure's reason as it travels: newlines and tabs folded to one space, other
    controls removed, at most ``limit`` characters (``…`` marks a cut)."""
    if text is None:
        return None
    folded = _UNSAFE.sub("", _SPACE_LIKE.sub(" ", text)).strip()
    return _cut(re.sub(" {2,}", " ", folded), limit) or None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
