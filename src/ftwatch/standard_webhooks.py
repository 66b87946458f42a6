"""Standard Webhooks (standardwebhooks.com), both ways: signing the webhooks ftwatch
sends, and verifying the ones OpenAI sends it. Pure: no I/O, the caller's clock.

The scheme is three headers (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256>`` over ``"{id}.{timestamp}.{body}"``)
and a ``whsec_`` base64 key. A few lines of :mod:`hmac`; the reference library
would add three dependencies for them.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
from collections.abc import Mapping

from ftwatch.errors import WebhookRejectedError

__all__ = ["ReplayGuard", "WebhookRejectedError", "secret_key", "sign", "verify"]

#: How far a message's timestamp may be from now (the specification's advice).
TOLERANCE_S = 300


def secret_key(secret: str) -> bytes:
    """The key: the base64 text after ``whsec_``."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError('must be "whsec_" followed by base64, as Standard Webhooks secrets are') from None
    if not key:
        # An empty key signs nothing: anyone could forge the signature.
        raise ValueError('is empty: give "whsec_" followed by the base64 of a random key (24 bytes or more)')
    return key


def _digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    return "v1," + base64.b64encode(_digest(secret_key(secret), msg_id, str(timestamp), body)).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: float = TOLERANCE_S) -> str:
    """The message's id if its signature is one of ``secret``'s and its timestamp is
    within ``tolerance_s`` of ``now``; :class:`WebhookRejectedError` otherwise."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not stamp or not signatures:
        raise WebhookRejectedError("missing webhook-id, webhook-timestamp or webhook-signature")
    # ASCII digits only: str.isdigit() also takes "²³", which int() then refuses.
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        raise WebhookRejectedError("webhook-timestamp is not Unix seconds")
    if abs(now - int(stamp)) > tolerance_s:
        raise WebhookRejectedError(f"webhook-timestamp is more than {tolerance_s:g}s from now")
    expected = _digest(secret_key(secret), msg_id, stamp, body)
    for candidate in signatures.split():  # several while a secret is being rotated
        version, _, value = candidate.partition(",")
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if version == "v1" and hmac.compare_digest(given, expected):
            return msg_id
    raise WebhookRejectedError("no valid v1 signature")


class ReplayGuard:
    """The ids seen within the tolerance window: a message sent again (a retry, or
    someone replaying a captured one) is recognized. Bounded: the oldest go first."""

    def __init__(self, size: int = 10_000) -> None:
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._size = size

    def first_time(self, msg_id: str) -> bool:
        if msg_id in self._seen:
            return False
        self._seen[msg_id] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True
