"""OpenAI's signed webhooks: the verification (pure, with properties) and the daemon
that polls at once when a genuine one arrives."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftwatch.standard_webhooks import ReplayGuard, WebhookRejectedError, sign, verify
from tests.conftest import Daemon, free_port, wait_for
from tests.providers import world
from tests.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"openai-endpoint-secret-32-bytes!").decode()
OTHER = "whsec_" + base64.b64encode(b"another-secret-of-some-length!!").decode()


def _headers(msg_id: str, stamp: int, body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
    }


@given(st.text(min_size=1, max_size=40).filter(lambda t: t.strip() == t and t), st.binary(max_size=300))
def test_what_is_signed_verifies_and_any_changed_byte_does_not(msg_id: str, body: bytes) -> None:
    now = 1_800_000_000
    headers = _headers(msg_id, now, body)
    assert verify(SECRET, headers, body, now) == msg_id
    for index in range(len(body)):
        changed = body[:index] + bytes([body[index] ^ 1]) + body[index + 1 :]
        with pytest.raises(WebhookRejectedError):
            verify(SECRET, headers, changed, now)
    with pytest.raises(WebhookRejectedError):
        verify(OTHER, headers, body, now)


def test_a_stale_or_unsigned_message_is_rejected_and_a_rotated_secret_still_verifies() -> None:
    body = b'{"type":"fine_tuning.job.succeeded"}'
    now = 1_800_000_000
    with pytest.raises(WebhookRejectedError, match="from now"):
        verify(SECRET, _headers("evt_1", now - 301, body), body, now)
    with pytest.raises(WebhookRejectedError, match="missing"):
        verify(SECRET, {"webhook-id": "evt_1"}, body, now)
    both = _headers("evt_1", now, body, OTHER)
    both["webhook-signature"] += " " + sign(SECRET, "evt_1", now, body)
    assert verify(SECRET, both, body, now) == "evt_1"


def test_the_replay_guard_knows_each_id_once_and_stays_bounded() -> None:
    guard = ReplayGuard(size=3)
    assert [guard.first_time(i) for i in ("a", "b", "a", "c", "d", "a")] == [True, True, False, True, True, True]


@pytest.fixture
def push_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FTWATCH_", "CO_", "OPENAI_", "AWS_"))}
    return env | {
        "FTWATCH_STATE__PATH": str(tmp_path / "state.db"),
        "FTWATCH_POLL__INTERVAL_S": "60",  # a push, not the interval, must bring the news
        "FTWATCH_DELIVERY__RETRY_INITIAL_S": "0.05",
        "PYTHONUNBUFFERED": "1",
    }


def test_a_genuine_push_is_polled_at_once_and_a_forged_or_replayed_one_changes_nothing(
    push_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as api:
        job = api.add("pushed", "running")
        port = free_port()
        env = api.env(push_env, tmp_path, webhook={"secret": SECRET}) | {
            "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
            "FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}]),
        }
        api.sim.webhook_url = f"http://127.0.0.1:{port}/webhooks/openai"
        api.sim.webhook_secret = SECRET
        daemon = Daemon(env)
        try:
            daemon.wait_log("poll.cycle")  # the baseline
            lists = api.sim.count("list_models")

            forged = b'{"id":"evt_x","type":"fine_tuning.job.succeeded","data":{"id":"%s"}}' % job.encode()
            bad = _headers("evt_x", int(time.time()), forged, OTHER)
            answer = httpx.post(api.sim.webhook_url, content=forged, headers=bad)
            assert answer.status_code == 400
            time.sleep(0.5)
            assert api.sim.count("list_models") == lists  # a forged push asks for nothing

            started = time.monotonic()
            api.move(job, "succeeded")  # the simulator pushes, signed
            wait_for(lambda: receiver.received, timeout=10, what="the pushed job's transition")
            assert time.monotonic() - started < 10  # not the 60 s interval
            assert receiver.received[0].json()["status"] == "succeeded"
            assert api.sim.pushes == ["200"]

            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert 'ftwatch_webhook_pushes_total{outcome="ok",source="openai"} 1.0' in metrics
            assert 'ftwatch_webhook_pushes_total{outcome="rejected",source="openai"} 1.0' in metrics
        finally:
            assert daemon.stop() == 0
        assert SECRET not in daemon.stderr
