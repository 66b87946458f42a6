"""Notifiers against real receivers: signatures, Slack pacing, notify-test, plug-ins."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ftwatch.model import Transition
from ftwatch.notifiers.slack import slack_message
from ftwatch.sim.cohere import CohereSimulator

from .conftest import Daemon, notifiers_env, ready_after_baseline, run_here, run_once, wait_for
from .receiver import Answer, Receiver

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + base64.b64encode(b"a signing key for the test").decode()


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> None:
    """An independent verifier, written from the Standard Webhooks specification."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        raise ValueError("timestamp outside tolerance")
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise ValueError("no valid signature")


def test_signed_webhooks_verify_independently(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Signed bodies verify with an independent Standard Webhooks verifier; tampering fails."""
    env = {**base_env, **notifiers_env({"type": "webhook", "url": receiver.url, "secret": SECRET})}
    ready_after_baseline(sim, "m", env)
    [got] = receiver.received
    verify_standard_webhook(SECRET, got.headers, got.body)
    assert got.headers["webhook-id"] == got.json()["id"]
    tampered = got.body.replace(b"STATUS_READY", b"STATUS_FAILED")
    try:
        verify_standard_webhook(SECRET, got.headers, tampered)
    except ValueError:
        pass
    else:
        raise AssertionError("a tampered body verified")


def test_unsigned_webhooks_carry_no_signature(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Without a secret, no webhook-* signature headers are sent."""
    env = {**base_env, **notifiers_env({"type": "webhook", "url": receiver.url})}
    ready_after_baseline(sim, "m", env)
    assert "webhook-signature" not in receiver.received[0].headers


def test_slack_is_paced_and_429_is_retried_after_retry_after(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """Slack gets about one message a second, and a 429 waits its Retry-After."""
    model = sim.add_model("my-classifier", "STATUS_QUEUED")
    env = {**base_env, **notifiers_env({"type": "slack", "webhook_url": receiver.url})}
    run_once(env)
    for status in ("STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_READY"):
        sim.set_status(model, status)
    receiver.answer(Answer(200), Answer(429, b"rate_limited", {"Retry-After": "2"}))
    daemon = daemons(env)
    wait_for(lambda: len(receiver.received) == 3, what="all three despite the 429")
    daemon.stop()
    assert "rate_limited" in daemon.stderr
    texts = [body["text"] for body in receiver.bodies()]
    assert texts[0].startswith("my-classifier is finetuning (was queued)")
    assert texts[1].startswith("my-classifier is deploying api (was finetuning)")
    assert texts[2].startswith("my-classifier is ready (was deploying api)")
    times = [a.at for a in receiver.attempts]
    assert len(times) == 4
    assert times[1] - times[0] >= 0.95  # about one message a second
    assert times[2] - times[1] >= 1.95  # Retry-After: 2 honoured
    assert times[3] - times[2] >= 0.95


def test_slack_message_names_model_statuses_and_time() -> None:
    """The Slack message names the model, both statuses in words, and the time."""
    message = slack_message(
        Transition(
            "ftw_1",
            "ft-9",
            "summarizer",
            "STATUS_FAILED",
            "STATUS_FINETUNING",
            "2026-11-01T12:00:00.000000000Z",
            None,
            "x",
        )
    )
    assert message["text"] == "summarizer failed (was finetuning) (model ft-9, at 2026-11-01T12:00:00.000000000Z)"
    assert "*summarizer* *failed* (was finetuning)" in message["blocks"][0]["text"]["text"]
    assert "ft-9" in message["blocks"][1]["elements"][0]["text"]


@pytest.mark.parametrize(
    ("status", "emoji"),
    [
        ("STATUS_READY", ":white_check_mark:"),
        ("STATUS_FAILED", ":x:"),
        ("STATUS_PAUSED", ":double_vertical_bar:"),
        ("STATUS_DELETED", ":wastebasket:"),
        ("STATUS_TEMPORARILY_OFFLINE", ":warning:"),
        ("STATUS_FINETUNING", ":information_source:"),
    ],
)
def test_slack_leads_cohere_words_with_their_states_emoji_and_offline_with_a_warning(status: str, emoji: str) -> None:
    message = slack_message(
        Transition("ftw_1", "ft-9", "bot", status, "STATUS_QUEUED", "2026-11-01T12:00:00Z", None, "x")
    )
    assert message["blocks"][0]["text"]["text"].startswith(f"{emoji} *bot*")


def test_notify_test_reports_each_notifier_and_fails_for_a_dead_one(
    receiver: Receiver, base_env: dict[str, str]
) -> None:
    """notify-test reports each notifier by type and host, and exits 1 if one failed."""
    dead = Receiver().start()  # started, then closed: nothing listens there any more
    dead_url = dead.url + "/secret-path-123"
    dead.stop()
    env = {
        **base_env,
        **notifiers_env(
            {"type": "webhook", "url": receiver.url, "secret": SECRET},
            {"type": "slack", "webhook_url": dead_url},
        ),
    }
    done = run_here(["notify-test"], env)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok      webhook 127.0.0.1 [webhook-")
    assert lines[1].startswith("FAILED  slack 127.0.0.1 [slack-")
    assert "]: ConnectError" in lines[1]
    assert "secret-path-123" not in done.stdout + done.stderr
    [got] = receiver.received
    verify_standard_webhook(SECRET, got.headers, got.body)


def test_notify_test_succeeds_when_all_deliver(receiver: Receiver, base_env: dict[str, str]) -> None:
    """notify-test exits 0 when every notifier delivered."""
    env = {**base_env, **notifiers_env({"type": "webhook", "url": receiver.url}, {"type": "stdout"})}
    done = run_here(["notify-test"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ftwatch-notify-test" in done.stdout  # the stdout notifier's own line
    assert len(receiver.received) == 1


def test_a_plugin_notifier_is_found_through_its_entry_point(
    sim: CohereSimulator, base_env: dict[str, str], tmp_path: Path
) -> None:
    """The example plug-in, made importable with a dist-info as pip would write it."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(ROOT / "examples" / "file-notifier" / "ftwatch_file_notifier.py", site)
    dist = site / "ftwatch_file_notifier-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ftwatch-file-notifier\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[ftwatch.notifiers]\nfile = ftwatch_file_notifier:FileNotifier\n")
    out = tmp_path / "transitions.jsonl"
    env = {**base_env, "PYTHONPATH": str(site), **notifiers_env({"type": "file", "path": str(out)})}
    ready_after_baseline(sim, "m", env)
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == ["STATUS_READY"]

    bad = run_here(["check-config"], {**base_env, **notifiers_env({"type": "file"})})
    assert bad.returncode == 2
    assert "unknown notifier type 'file'" in bad.stderr  # without the plug-in on the path
