"""The PagerDuty notifier (Events API v2): an incident that opens on a failure or a
stall and resolves itself when the job is good again.

Every event of one job carries the same ``dedup_key`` (``ftwatch/{source}/{model_id}``),
so a stall then a failure is one incident, and the job's next good state resolves
it (Apprise's ``pagerduty://`` can only trigger: an "all clear" would open another).
A transition that neither triggers nor resolves is not sent. PagerDuty answers 202
to an accepted event, 400 to one it will never take (a dead letter: the key or the
body is wrong), 429 and 5xx to one to send again later.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ftwatch.model import Transition
from ftwatch.notifiers.base import (
    NotifierConfig,
    NotifierContext,
    UrlNotifier,
    check_http_url,
    post_json,
)
from ftwatch.secrets import inline_or_file
from ftwatch.textsafe import failure_text, printable
from ftwatch.wording import headline

__all__ = ["INCIDENT_WORDS", "PagerDutyConfig", "PagerDutyNotifier", "action_for", "dedup_key"]

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

#: What ``trigger_on`` and ``resolve_on`` take: the normalized states, and a stall.
INCIDENT_WORDS = frozenset(
    {"queued", "running", "ready", "failed", "cancelled", "paused", "deleted", "unknown", "stalled"}
)

#: PagerDuty's limits: a summary of 1024 characters, a dedup key of 255.
_SUMMARY_MAX = 1024
_KEY_MAX = 255


class PagerDutyConfig(NotifierConfig):
    """``type = "pagerduty"``."""

    routing_key: SecretStr | None = None
    routing_key_file: Path | None = None
    url: str = EVENTS_URL
    trigger_on: list[str] = Field(default_factory=lambda: ["failed", "stalled"])
    resolve_on: list[str] = Field(default_factory=lambda: ["ready", "running"])
    severity: Literal["critical", "error", "warning", "info"] = "error"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("trigger_on", "resolve_on")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        unknown = [word for word in value if word.lower() not in INCIDENT_WORDS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is no state; use {', '.join(sorted(INCIDENT_WORDS))}")
        return [word.lower() for word in value]

    @model_validator(mode="after")
    def _complete(self) -> PagerDutyConfig:
        if inline_or_file("routing_key", self.routing_key, self.routing_key_file) is None:
            raise ValueError("needs routing_key or routing_key_file (the integration key of an Events API v2 service)")
        if set(self.trigger_on) & set(self.resolve_on):
            both = sorted(set(self.trigger_on) & set(self.resolve_on))[0]
            raise ValueError(f"{both!r} is in both trigger_on and resolve_on: an event cannot open and close")
        return self


def dedup_key(transition: Transition) -> str:
    """One incident per job: every event of it carries this key."""
    return f"ftwatch/{transition.source}/{transition.model_id}"[:_KEY_MAX]


def action_for(transition: Transition, trigger_on: list[str], resolve_on: list[str]) -> str | None:
    """``trigger``, ``resolve`` or ``None`` (not for PagerDuty)."""
    word = "stalled" if transition.stalled else transition.state
    if word in trigger_on:
        return "trigger"
    if word in resolve_on:
        return "resolve"
    return None


class PagerDutyNotifier(UrlNotifier):
    """Triggers and resolves one PagerDuty incident per job."""

    kind = "pagerduty"
    config_model: ClassVar[type[NotifierConfig]] = PagerDutyConfig
    # PagerDuty's Events API takes about 120 events a minute per integration key.
    min_interval_s = 0.5

    def __init__(self, config: PagerDutyConfig, routing_key: str, context: NotifierContext) -> None:
        super().__init__(config.url, context)
        self._key = routing_key
        self._config = config
        # The routing key tells one service from another; hashed, never shown.
        self.identity = f"{config.url}#{hashlib.sha256(routing_key.encode()).hexdigest()[:16]}"

    @classmethod
    def from_config(cls, config: PagerDutyConfig, context: NotifierContext) -> PagerDutyNotifier:
        key = config.routing_key
        if config.routing_key_file is not None:
            key = context.read_secret(config.routing_key_file, "the routing key (routing_key_file)")
        assert key is not None  # the config's validator made sure one is given
        return cls(config, key.get_secret_value(), context)

    def event(self, transition: Transition) -> dict[str, object] | None:
        """The Events API v2 body for ``transition``, or ``None`` when it is not sent."""
        action = action_for(transition, self._config.trigger_on, self._config.resolve_on)
        if action is None:
            return None
        event: dict[str, object] = {
            "routing_key": self._key,
            "event_action": action,
            "dedup_key": dedup_key(transition),
        }
        if action == "trigger":
            event["payload"] = {
                "summary": _summary(transition)[:_SUMMARY_MAX],
                "source": f"ftwatch/{transition.source}",
                "severity": self._config.severity,
                "timestamp": transition.detected_at if transition.stalled else transition.occurred_at,
                "component": transition.model_id,
                "group": transition.provider,
                "class": "stalled" if transition.stalled else transition.state,
                "custom_details": transition.to_payload(),
            }
        return event

    async def send(self, transition: Transition) -> None:
        event = self.event(transition)
        if event is not None:
            await post_json(self._http, self._url, json.dumps(event, separators=(",", ":")).encode())


def _summary(transition: Transition) -> str:
    """What the incident says: "bot failed (openai, ftjob-1): the reason"."""
    text = f"{headline(transition)} ({transition.source}, {transition.model_id})"
    reason = failure_text(transition.failure_message, 300)
    return printable(f"{text}: {reason}" if reason else text)
