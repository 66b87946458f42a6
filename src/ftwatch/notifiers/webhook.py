"""The webhook notifier: the contract's JSON body, signed per Standard Webhooks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from ftwatch.model import Transition
from ftwatch.notifiers.base import (
    DeliveryFailedError,
    NotifierConfig,
    NotifierContext,
    UrlNotifier,
    check_header_name,
    check_header_value,
    check_http_url,
    compiled,
    post_json,
    resolve_url,
)
from ftwatch.secrets import inline_or_file
from ftwatch.standard_webhooks import secret_key, sign

if TYPE_CHECKING:
    from ftwatch.templates import Template

__all__ = ["WebhookConfig", "WebhookNotifier", "sign", "url_and_secret"]


_RESERVED_HEADERS = {"content-type", "content-length", "host", "transfer-encoding"}


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
        if not value:
            return value
        from ftwatch.templates import SAMPLE, TemplateText  # noqa: PLC0415 - Jinja2 only for header templates

        checked: dict[str, str] = {}
        for name, source in value.items():
            check_header_name(name)
            if name.lower() in _RESERVED_HEADERS or name.lower().startswith(("webhook-", "ce-")):
                raise ValueError(f"header {name!r} is ftwatch's own (the body and its signature are fixed)")
            text = TemplateText.of(source)  # compiled once, here
            check_header_value(text.compiled.render(SAMPLE), name)
            checked[name] = text
        return checked

    @model_validator(mode="after")
    def _complete(self) -> WebhookConfig:
        # Files are read when the notifier is built (by the application's secret
        # reader); here, only what the table itself says is checked.
        if (url := inline_or_file("url", self.url, self.url_file)) is not None:
            check_http_url(url)
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("give secret or secret_file, not both")
        if self.secret is not None:
            secret_key(self.secret.get_secret_value())
        return self

    def compiled_headers(self) -> dict[str, Template]:
        return {name: compiled(source) for name, source in self.headers.items()}


def url_and_secret(config: WebhookConfig, context: NotifierContext) -> tuple[str, str | None]:
    """The URL and signing secret a webhook-like table names (reading their files)."""
    url = resolve_url(config.url, config.url_file, context, "url_file")
    secret = config.secret
    if config.secret_file is not None:
        secret = context.read_secret(config.secret_file, "the signing secret (secret_file)")
    if secret is not None:
        secret_key(secret.get_secret_value())
    return url, secret.get_secret_value() if secret else None


class WebhookNotifier(UrlNotifier):
    """POSTs each transition as JSON to one URL."""

    kind = "webhook"
    config_model: ClassVar[type[NotifierConfig]] = WebhookConfig
    min_interval_s = 0.0

    def __init__(
        self, url: str, secret: str | None, context: NotifierContext, headers: dict[str, Template] | None = None
    ) -> None:
        super().__init__(url, context)
        self._secret = secret
        self._headers = headers or {}

    @classmethod
    def from_config(cls, config: WebhookConfig, context: NotifierContext) -> WebhookNotifier:
        url, secret = url_and_secret(config, context)
        return cls(url, secret, context, config.compiled_headers())

    async def send(self, transition: Transition) -> None:
        body = json.dumps(transition.to_payload(), separators=(",", ":")).encode()
        await self.post_signed(transition, body)

    async def post_signed(self, transition: Transition, body: bytes, own: dict[str, str] | None = None) -> None:
        """POST ``body`` with the configured headers, ``own`` (the body's type's), and
        the Standard Webhooks signature when a secret is set."""
        try:
            # What a template makes of this transition (a model name in another
            # script, say) may be no header HTTP can carry: no retry will change that.
            headers = {name: check_header_value(t.render(transition), name) for name, t in self._headers.items()}
        except ValueError as exc:
            raise DeliveryFailedError(str(exc), permanent=True) from None
        headers |= own or {}
        if self._secret is not None:
            timestamp = int(time.time())
            headers |= {
                "webhook-id": transition.id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._secret, transition.id, timestamp, body),
            }
        await post_json(self._http, self._url, body, headers)
