"""One source never holds up another: an API that pages for ever, one job's refusal,
a job listed twice or gone (issue 17, items 6-8)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Daemon, free_port, run_cli, run_here, wait_for
from tests.providers import world
from tests.receiver import Receiver


def test_an_api_paging_for_ever_delays_no_other_source_and_is_marked_down(
    quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai", latency_s=0.05) as endless, world("cohere") as cohere:
        endless.add("real", "running")
        model = cohere.add("model", "STATUS_FINETUNING")
        port = free_port()
        env = (
            quiet_env
            | endless.credentials(tmp_path)
            | cohere.credentials(tmp_path)
            | {
                "FTWATCH_SOURCES": json.dumps([endless.source(), cohere.source()]),
                "FTWATCH_POLL__INTERVAL_S": "1",
                "FTWATCH_POLL__SOURCE_TIMEOUT_S": "4",
                "FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}",
                "FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}]),
            }
        )
        daemon = Daemon(env)
        try:
            daemon.wait_log("poll.cycle")  # both baselined
            endless.sim.endless_pages = True
            time.sleep(1.5)
            started = time.monotonic()
            cohere.move(model, "STATUS_READY")
            wait_for(lambda: receiver.received, timeout=10, what="Cohere's READY while OpenAI pages for ever")
            assert time.monotonic() - started < 5
            assert receiver.received[0].json()["status"] == "STATUS_READY"
            daemon.wait_log('"source.failed"', timeout=15)
            assert "took longer than 4s" in daemon.stderr
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert 'ftwatch_source_up{source="openai"} 0.0' in metrics
            assert 'ftwatch_source_up{source="cohere"} 1.0' in metrics
        finally:
            assert daemon.stop() == 0
        # No phantom job of the endless pages was ever taken for a real one.
        assert all(r.json()["source"] == "cohere" for r in receiver.received)


def test_a_listing_past_its_page_cap_fails_that_source_in_one_line(quiet_env: dict[str, str], tmp_path: Path) -> None:
    with world("openai") as api:
        api.add("real", "running")
        api.sim.endless_pages = True
        env = api.env(quiet_env, tmp_path, max_pages=5)
        done = run_here(["run", "--once"], env)
        assert done.returncode == 1, done.stderr
        assert "still more pages after 5" in done.stderr
        assert api.sim.count("list_models") == 5


@pytest.mark.parametrize("provider", ["bedrock", "openai"])
def test_a_refusal_of_one_jobs_detail_is_that_jobs_failure_not_the_keys(
    provider: str, quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world(provider) as api:
        denied = api.add("denied", "InProgress" if provider == "bedrock" else "running")
        other = api.add("other", "InProgress" if provider == "bedrock" else "running")
        env = api.env(quiet_env, tmp_path) | {
            "FTWATCH_NOTIFIERS": json.dumps([{"type": "webhook", "url": receiver.url}])
        }
        assert run_here(["run", "--once"], env).returncode == 0  # the baseline
        api.sim.denied.add(denied)
        ended = "Completed" if provider == "bedrock" else "succeeded"
        api.move(denied, ended)
        api.move(other, ended)
        for _ in range(2):
            done = run_here(["run", "--once"], env)
            assert done.returncode == 0, done.stderr  # not exit 3: the key is fine
            assert done.stderr.count('"model.failed"') == 1
            assert "may not read this job" in done.stderr
        assert [r.json()["model_id"] for r in receiver.received] == [other]
        # The list itself refused is still the key's: exit 3.
        wrong = {"AWS_SECRET_ACCESS_KEY": "wrong"} if provider == "bedrock" else {"OPENAI_API_KEY": "sk-wrong"}
        refused = run_here(["run", "--once"], env | wrong)
        assert refused.returncode == 3, refused.stderr


def test_a_job_listed_twice_is_read_once_and_a_vanished_one_is_counted_as_gone(
    quiet_env: dict[str, str], tmp_path: Path
) -> None:
    with world("openai") as api:
        twice = api.add("twice", "running")
        echo = api.add("echo", "queued")
        leaving = api.add("leaving", "running")
        api.add("staying", "running")
        api.sim.override(echo, id=twice)  # a second page lists the same job again, staler
        env = api.env(quiet_env, tmp_path)
        listed = run_cli(["models", "--json"], env)
        assert listed.returncode == 0, listed.stderr
        assert [m["id"] for m in json.loads(listed.stdout)].count(twice) == 1
        assert run_here(["run", "--once"], env).returncode == 0  # the baseline
        # A lazy baseline reads no history: its event reads are the running jobs'
        # progress, one request each, which every cycle makes again.
        progress_reads = api.sim.count("list_events")
        for _ in range(3):
            assert run_here(["run", "--once"], env).returncode == 0
        assert api.sim.count("list_events") == 4 * progress_reads  # nothing moved: no history read
        api.sim.remove_job(leaving)
        done = run_here(["run", "--once"], env)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count('"model.gone"') == 1
        status = run_cli(["status", "--json"], env)
        report = json.loads(status.stdout)
        assert report["models"] == {"openai": 2}
        assert report["models_gone"] == {"openai": 1}
        assert "openai 2 (1 gone)" in run_cli(["status"], env).stdout
        again = run_here(["run", "--once"], env)
        assert '"model.gone"' not in again.stderr  # marked once
