"""Every answer true (issue 24): clocks, bodies, terminals and exit codes, each as a
user meets it (the CLI as a subprocess, the simulators as the APIs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.providers import world
from tests.receiver import Receiver

DAY_NS = 86_400 * 1_000_000_000


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FTWATCH_", "CO_", "OPENAI_", "AWS_"))}
    return env | {
        "FTWATCH_STATE__PATH": str(tmp_path / "state.db"),
        "FTWATCH_DELIVERY__RETRY_INITIAL_S": "0.05",
        "FTWATCH_HTTP__LISTEN": "",
        "PYTHONUNBUFFERED": "1",
    }


def _hooked(env: dict[str, str], receiver: Receiver) -> dict[str, str]:
    return env | {"FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}])}


def _once(env: dict[str, str]) -> str:
    done = run_cli(["run", "--once"], env)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.parametrize("offset_ns", [-30 * DAY_NS, 5 * 1_000_000_000], ids=["30-days-behind", "5-s-ahead"])
def test_steps_between_polls_are_kept_whatever_the_providers_clock(
    offset_ns: int, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as api:
        api.sim.clock_offset_ns = offset_ns
        job = api.add("skewed", "queued")
        env = _hooked(api.env(clean_env, tmp_path), receiver)
        _once(env)  # the baseline: queued, no time of its own
        api.move(job, "running")
        api.move(job, "succeeded")
        _once(env)
        _once(env)
        steps = [(b["previous_status"], b["status"]) for b in receiver.bodies()]
        assert steps == [("queued", "running"), ("running", "succeeded")]


@pytest.mark.parametrize("end_time", [None, "yesterday-ish", "1999-01-01T00:00:00Z"], ids=["missing", "bad", "old"])
def test_bedrocks_failure_message_reaches_the_body_whatever_its_times(
    end_time: str | None, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("bedrock") as api:
        job = api.add("failing", "InProgress")
        env = _hooked(api.env(clean_env, tmp_path), receiver)
        _once(env)
        api.sim.set_status(job, "Failed", failure_message="Insufficient permissions on s3://bucket/train.jsonl")
        times = {"endTime": end_time, "lastModifiedTime": end_time}
        api.sim.override(job, **{k: v for k, v in times.items() if v is not None})
        if end_time is None:
            api.sim.job(job).end_ns = None
            api.sim.override(job, lastModifiedTime=None)
        _once(env)
        (body,) = receiver.bodies()
        assert body["status"] == "Failed"
        assert body["failure_message"] == "Insufficient permissions on s3://bucket/train.jsonl"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2026-12-01 21:54:13", "2026-12-01T21:54:13.000000000Z"),
        (1796161453, "2026-12-01T21:44:13.000000000Z"),
        (1796161453.5, "2026-12-01T21:44:13.500000000Z"),
        ("2026-12-01T21:54:13.123Z", "2026-12-01T21:54:13.123000000Z"),
    ],
)
def test_bedrock_times_are_read_as_the_aws_sdks_read_them(
    written: object, expected: str, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("bedrock") as api:
        job = api.add("dated", "InProgress")
        env = _hooked(api.env(clean_env, tmp_path), receiver)
        _once(env)
        api.sim.set_status(job, "Completed")
        api.sim.override(job, endTime=written)
        _once(env)
        (body,) = receiver.bodies()
        assert body["occurred_at"] == expected


def test_an_unreadable_bedrock_time_falls_back_to_detection_and_says_so_once(
    clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("bedrock") as api:
        job = api.add("undated", "InProgress")
        env = _hooked(api.env(clean_env, tmp_path), receiver)
        _once(env)
        api.sim.set_status(job, "Completed")
        api.sim.override(job, endTime="the day after tomorrow", lastModifiedTime="soon")
        stderr = _once(env)
        (body,) = receiver.bodies()
        assert body["occurred_at"] == body["detected_at"]
        told = [json.loads(line) for line in stderr.splitlines() if '"time.unreadable"' in line]
        assert {t["field"] for t in told} == {"endTime", "lastModifiedTime"}  # each once, not per read
