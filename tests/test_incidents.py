"""Incident notifiers against real local receivers: PagerDuty's Events API v2 (one
incident per job, opened and closed with the same key) and CloudEvents over HTTP,
read back by the CloudEvents SDK in both modes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

from ftwatch.model import Transition
from ftwatch.notifiers.pagerduty import action_for
from ftwatch.standard_webhooks import sign
from tests.conftest import notifiers_env, run_cli, run_once
from tests.providers import World, world
from tests.receiver import Answer, Receiver

ROUTING_KEY = "R0UT1NGK3Y0000000000000000000000"


@pytest.fixture
def openai() -> Iterator[World]:
    with world("openai") as api:
        yield api


@pytest.fixture
def env(openai: World, quiet_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return openai.env(quiet_env | {"FTWATCH_DELIVERY__RETRY_MAX_S": "0.1"}, tmp_path)


def _pagerduty(receiver: Receiver, **extra: object) -> dict[str, object]:
    return {"type": "pagerduty", "routing_key": ROUTING_KEY, "url": receiver.url} | extra


def test_pagerduty_triggers_then_resolves_the_same_incident(
    openai: World, env: dict[str, str], receiver: Receiver
) -> None:
    receiver.default = Answer(202, b'{"status":"success","message":"Event processed","dedup_key":"x"}')
    job = openai.add("trainer", "running")
    quiet = openai.add("quiet", "running")
    env |= notifiers_env(_pagerduty(receiver, trigger_on=["failed", "paused"], resolve_on=["running", "ready"]))
    run_once(env)  # the baseline
    openai.move(job, "paused")
    run_once(env)
    openai.move(job, "running")
    openai.move(quiet, "queued")  # neither triggers nor resolves: not sent
    run_once(env)

    trigger, resolve = receiver.bodies()
    assert trigger["event_action"] == "trigger"
    assert resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == f"ftwatch/openai/{job}"
    assert trigger["routing_key"] == resolve["routing_key"] == ROUTING_KEY
    payload = trigger["payload"]
    assert payload["summary"] == f"trainer paused (openai, {job})"
    assert (payload["source"], payload["severity"], payload["component"]) == ("ftwatch/openai", "error", job)
    assert payload["custom_details"]["status"] == "paused"
    assert "payload" not in resolve


def test_pagerduty_triggers_on_a_failure_by_default_and_a_400_is_a_dead_letter(
    openai: World, env: dict[str, str], receiver: Receiver
) -> None:
    receiver.default = Answer(400, b'{"status":"invalid event","errors":["routing_key is invalid"]}')
    job = openai.add("trainer", "running")
    env |= notifiers_env(_pagerduty(receiver))
    run_once(env)
    openai.move(job, "failed")
    run_once(env)
    (sent,) = [json.loads(a.body) for a in receiver.attempts]
    assert sent["event_action"] == "trigger"
    assert "invalid training file" in sent["payload"]["summary"].lower()
    done = run_cli(["outbox", "--state", "dead", "--json"], env)
    assert done.returncode == 0, done.stderr
    (dead,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert dead["model_id"] == job
    assert "HTTP 400" in dead["last_error"]
    assert ROUTING_KEY not in done.stdout + done.stderr  # the key is a secret


def test_pagerduty_retries_429_and_5xx_then_delivers(openai: World, env: dict[str, str], receiver: Receiver) -> None:
    receiver.answer(Answer(429, headers={"retry-after": "0"}), Answer(503))
    receiver.default = Answer(202)
    job = openai.add("trainer", "running")
    env |= notifiers_env(_pagerduty(receiver))
    run_once(env)
    openai.move(job, "failed")
    for _ in range(10):
        run_once(env)  # each run --once delivers what is due
        if receiver.received:
            break
    assert [a.body == receiver.attempts[0].body for a in receiver.attempts] == [True, True, True]
    assert len(receiver.received) == 1


def test_a_stall_triggers_and_the_next_good_state_resolves() -> None:
    stalled = Transition.of_ftwatch("s", "ftjob-1", None, "queued", "t", type="finetuned_model.stalled")
    assert action_for(stalled, ["failed", "stalled"], ["ready", "running"]) == "trigger"
    moved = Transition("m", "ftjob-1", None, "running", "queued", "t", None, "t", provider="openai")
    assert action_for(moved, ["failed", "stalled"], ["ready", "running"]) == "resolve"


def test_pagerduty_refuses_a_table_without_a_key_in_one_line(env: dict[str, str]) -> None:
    env |= notifiers_env({"type": "pagerduty", "trigger_on": ["failed"]})
    done = run_cli(["check-config"], env)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "routing_key" in done.stderr


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_cloudevents_are_read_by_the_sdk_in_both_modes_and_signed(
    mode: str, openai: World, env: dict[str, str], receiver: Receiver
) -> None:
    secret = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
    job = openai.add("tr\u00e4iner", "running")
    env |= notifiers_env({"type": "cloudevents", "url": receiver.url, "mode": mode, "secret": secret})
    run_once(env)
    openai.move(job, "succeeded")
    run_once(env)
    (got,) = receiver.received
    if mode == "binary":
        assert got.headers["content-type"] == "application/json"
        assert got.headers["ce-specversion"] == "1.0"
    else:
        assert got.headers["content-type"].startswith("application/cloudevents+json")
        assert not any(name.startswith("ce-") for name in got.headers)
    event = from_http(HTTPMessage(headers=got.headers, body=got.body), JSONFormat())
    body = event.get_data()
    assert isinstance(body, dict)
    assert event.get_id() == body["id"]
    assert event.get_source() == "ftwatch/openai"
    assert event.get_type() == "dev.ftwatch.finetuned_model.status_changed"
    assert event.get_subject() == job
    assert event.get_datacontenttype() == "application/json"
    assert body["status"] == "succeeded"
    assert body["model_name"] == "tr\u00e4iner"
    stamp = int(got.headers["webhook-timestamp"])
    assert got.headers["webhook-signature"] == sign(secret, body["id"], stamp, got.body)
