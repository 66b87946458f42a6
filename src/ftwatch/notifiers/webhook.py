"""The webhook notifier: the contract's JSON body, signed per Standard Webhooks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from ftwatch.model import Transition
from ftwatch.notifiers.base import (
    DeliveryFailedError,
    NotifierConfig,
    NotifierContext,
    check_header_name,
    check_header_value,
    check_http_url,
    host_of,
    post_json,
)
from ftwatch.secretfile import read_secret
from ftwatch.templates import SAMPLE, Template, compile_template

__all__ = ["WebhookConfig", "WebhookNotifier", "sign"]


_RESERVED_HEADERS = {"content-type", "content-length", "host", "transfer-encoding"}


def _secret_key(secret: str) -> bytes:
    """Standard Webhooks: the key is the base64 text after ``whsec_``."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError('must be "whsec_" followed by base64, as Standard Webhooks secrets are') from None
    if not key:
        # An empty key signs nothing: anyone could forge the signature.
        raise ValueError('is empty: give "whsec_" followed by the base64 of a random key (24 bytes or more)')
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookConfig(NotifierConfig):
    url: SecretStr | None = None
    url_file: Path | None = None
    secret: SecretStr | None = None
    secret_file: Path | None = None
    #: Extra headers; values are templates. The body is the contract's, always.
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, template in value.items():
            check_header_name(name)
            if name.lower() in _RESERVED_HEADERS or name.lower().startswith("webhook-"):
                raise ValueError(f"header {name!r} is ftwatch's own (the body and its signature are fixed)")
            check_header_value(compile_template(template).render(SAMPLE), name)
        return value

    @model_validator(mode="after")
    def _resolve_files(self) -> WebhookConfig:
        if self.url_file is not None:
            object.__setattr__(self, "url", read_secret(self.url_file))
        if self.url is None:
            raise ValueError("needs url (or url_file)")
        try:
            check_http_url(self.url.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"{'url_file' if self.url_file else 'url'} {exc}") from None
        if self.secret_file is not None:
            object.__setattr__(self, "secret", read_secret(self.secret_file))
        if self.secret is not None:
            _secret_key(self.secret.get_secret_value())
        return self


class WebhookNotifier:
    """POSTs each transition as JSON to one URL."""

    config_model: ClassVar[type[NotifierConfig]] = WebhookConfig
    min_interval_s = 0.0

    def __init__(
        self, url: str, secret: str | None, context: NotifierContext, headers: dict[str, Template] | None = None
    ) -> None:
        self._url = url
        self._secret = secret
        self._headers = headers or {}
        self._http = context.http
        self.identity = url
        self.description = f"webhook {host_of(url)}"

    @classmethod
    def from_config(cls, config: WebhookConfig, context: NotifierContext) -> WebhookNotifier:
        assert config.url is not None  # the validator made sure
        secret = config.secret.get_secret_value() if config.secret else None
        headers = {name: compile_template(value) for name, value in config.headers.items()}
        return cls(config.url.get_secret_value(), secret, context, headers)

    async def send(self, transition: Transition) -> None:
        body = json.dumps(transition.to_payload(), separators=(",", ":")).encode()
        try:
            # What a template makes of this transition (a model name in another
            # script, say) may be no header HTTP can carry: no retry will change that.
            headers = {name: check_header_value(t.render(transition), name) for name, t in self._headers.items()}
        except ValueError as exc:
            raise DeliveryFailedError(str(exc), permanent=True) from None
        if self._secret is not None:
            timestamp = int(time.time())
            headers |= {
                "webhook-id": transition.id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._secret, transition.id, timestamp, body),
            }
        await post_json(self._http, self._url, body, headers)
