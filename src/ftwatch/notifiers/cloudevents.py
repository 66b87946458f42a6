"""The CloudEvents notifier: the webhook's body as a CloudEvents 1.0 event over HTTP,
for receivers that take only events (Knative brokers, Argo Events, Azure Event Grid).

Binary mode (the default) sends the body as it is and the event's attributes as
``ce-`` headers; structured mode sends one ``application/cloudevents+json`` document
with the body as its ``data``. Either is signed as the webhook is, when a secret is set.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import ClassVar, Literal

from ftwatch.model import Transition
from ftwatch.notifiers.base import NotifierConfig, NotifierContext
from ftwatch.notifiers.webhook import WebhookConfig, WebhookNotifier, url_and_secret

__all__ = ["CloudEventsConfig", "CloudEventsNotifier", "event_attributes"]

SPEC_VERSION = "1.0"


class CloudEventsConfig(WebhookConfig):
    """``type = "cloudevents"``: a webhook's keys, and the binding's ``mode``."""

    mode: Literal["binary", "structured"] = "binary"


def event_attributes(transition: Transition) -> dict[str, str]:
    """The event's context attributes (the contract's mapping)."""
    body_type = transition.type
    return {
        "specversion": SPEC_VERSION,
        "id": transition.id,
        "source": f"ftwatch/{transition.source}",
        "type": f"dev.ftwatch.{body_type}",
        "subject": transition.model_id,
        # A stall alert occurs when detected: it has no occurred_at of its own.
        "time": transition.detected_at if transition.stalled else transition.occurred_at,
        "datacontenttype": "application/json",
    }


def _header_value(value: str) -> str:
    """As the HTTP binding says: printable ASCII as it is, but for space, ``"`` and
    ``%``; everything else percent-encoded as UTF-8 (a model id may be any script)."""
    return urllib.parse.quote(value, safe="!#$&'()*+,/:;<=>?@[\\]^`{|}~")


class CloudEventsNotifier(WebhookNotifier):
    """POSTs each transition as a CloudEvent to one URL."""

    kind = "cloudevents"
    config_model: ClassVar[type[NotifierConfig]] = CloudEventsConfig

    #: Structured mode: one JSON document; binary (``False``): ``ce-`` headers.
    structured = False

    @classmethod
    def from_config(cls, config: WebhookConfig, context: NotifierContext) -> CloudEventsNotifier:
        url, secret = url_and_secret(config, context)
        notifier = cls(url, secret, context, config.compiled_headers())
        notifier.structured = isinstance(config, CloudEventsConfig) and config.mode == "structured"
        return notifier

    async def send(self, transition: Transition) -> None:
        attributes = event_attributes(transition)
        data = transition.to_payload()
        if self.structured:
            document = {**attributes, "data": data}
            body = json.dumps(document, separators=(",", ":")).encode()
            await self.post_signed(transition, body, {"content-type": "application/cloudevents+json; charset=utf-8"})
            return
        body = json.dumps(data, separators=(",", ":")).encode()
        headers = {
            f"ce-{name}": _header_value(value) for name, value in attributes.items() if name != "datacontenttype"
        }
        await self.post_signed(transition, body, headers | {"content-type": "application/json"})
