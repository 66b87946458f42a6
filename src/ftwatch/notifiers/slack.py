"""The Slack notifier: an incoming-webhook message in human words."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr, model_validator

from ftwatch.looks import look_of
from ftwatch.model import Transition, human_status
from ftwatch.notifiers.base import (
    NotifierConfig,
    NotifierContext,
    TemplatedConfig,
    UrlNotifier,
    check_http_url,
    post_json,
    resolve_url,
)
from ftwatch.secrets import inline_or_file
from ftwatch.textsafe import failure_text
from ftwatch.wording import how_far, reached, stuck

if TYPE_CHECKING:
    from ftwatch.templates import Template

__all__ = ["SlackConfig", "SlackNotifier", "slack_escape", "slack_message"]


def slack_escape(text: str) -> str:
    """Slack's three control characters, as its formatting guide says to escape them:
    a model named ``<!channel>`` or ``<https://evil|click>`` stays plain text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(transition: Transition, template: Template | None = None) -> dict[str, Any]:
    """``text`` for notifications and old clients, ``blocks`` for the channel.

    A template words both; the context line (model id and time) stays. Every value
    from the API is escaped, in the default words and in a template's fields alike."""
    transition = replace(
        transition,
        model_id=slack_escape(transition.model_id),
        model_name=slack_escape(transition.model_name) if transition.model_name else None,
        status=slack_escape(transition.status),
        previous_status=slack_escape(transition.previous_status) if transition.previous_status else None,
        user_id=slack_escape(transition.user_id) if transition.user_id else None,
    )
    name = transition.model_name or transition.model_id
    # "outage-job succeeded (was running)", "my-classifier is ready (was deploying api)".
    words = human_status(transition.status)
    verb = "is " if reached(transition.status).startswith("is ") else ""
    previous = f" (was {human_status(transition.previous_status)})" if transition.previous_status else ""
    text = f"{name} {verb}{words}{previous} (model {transition.model_id}, at {transition.occurred_at})"
    headline = f"{look_of(transition.status, transition.state).emoji} *{name}* {verb}*{words}*{previous}"
    reason = failure_text(transition.failure_message, 300)
    if reason:  # OpenAI's and Bedrock's reason: one line, escaped like the rest
        text += f": {slack_escape(reason)}"
    far = slack_escape(how_far(transition))
    if far:  # "succeeded after 2 h 14 m, 3,000 steps, final loss 0.412 → ft:…"
        text += f"; {far}"
    if transition.stalled:
        text = f"{name} is {stuck(transition)} (model {transition.model_id})"
        headline = f":hourglass: *{name}* is {stuck(transition)}"
    if template is not None:
        text = headline = template.render(transition, fallback=text)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": headline}}]
    if reason and not transition.stalled:
        # Plain text, its own block: no mrkdwn in it is read, no newline breaks out.
        blocks.append({"type": "section", "text": {"type": "plain_text", "text": slack_escape(reason), "emoji": False}})
    if far and not transition.stalled:
        blocks.append({"type": "section", "text": {"type": "plain_text", "text": far, "emoji": False}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"model `{transition.model_id}` · {transition.occurred_at}"}],
        }
    )
    return {"text": text, "blocks": blocks}


class SlackConfig(TemplatedConfig):
    webhook_url: SecretStr | None = None
    webhook_url_file: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> SlackConfig:
        # webhook_url_file is read when the notifier is built, by the application.
        if (url := inline_or_file("webhook_url", self.webhook_url, self.webhook_url_file)) is not None:
            check_http_url(url, "webhook_url")
        return self


class SlackNotifier(UrlNotifier):
    """Posts to a Slack incoming webhook, about one message a second as Slack allows."""

    kind = "slack"
    config_model: ClassVar[type[NotifierConfig]] = SlackConfig
    min_interval_s = 1.0

    def __init__(self, url: str, context: NotifierContext, template: Template | None = None) -> None:
        super().__init__(url, context)
        self._template = template

    @classmethod
    def from_config(cls, config: SlackConfig, context: NotifierContext) -> SlackNotifier:
        url = resolve_url(config.webhook_url, config.webhook_url_file, context, "webhook_url_file")
        return cls(url, context, config.compiled_template())

    async def send(self, transition: Transition) -> None:
        await post_json(self._http, self._url, json.dumps(slack_message(transition, self._template)).encode())
