"""How far a running job is, from each provider that tells: in the state, the
bodies, the summary on its end, the metrics and the live view."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from ftwatch.cycle import CycleFindings, Polled
from ftwatch.model import LOSS_TREND, ModelInfo, Progress, Summary, Transition
from ftwatch.ops.metrics import Metrics
from ftwatch.plan import PlanConfig, ReadPlan, progress_reads
from ftwatch.progress import advance, on_top, settle, summary_of, summary_words
from ftwatch.sim import simulator_type
from ftwatch.sim.kit import Fault
from ftwatch.statuses import BUILT_IN
from ftwatch.store.sqlite import SqliteStore
from ftwatch.wording import text_line
from tests.conftest import Daemon, free_port, hook_env, http_get, run_cli, run_once, wait_for
from tests.providers import LIFECYCLES, World, world
from tests.receiver import Receiver

#: The providers whose simulators tell a running job's progress, and how.
TELLING = ("openai", "azure_openai", "together", "fireworks")
pieces = st.builds(
    Progress,
    step=st.none() | st.integers(0, 10_000),
    total_steps=st.none() | st.integers(1, 10_000),
    train_loss=st.none() | st.floats(0, 10, allow_nan=False),
    eta_ns=st.none() | st.integers(0, 2**62),
)


@given(st.lists(st.none() | pieces, max_size=40))
def test_progress_keeps_each_fields_newest_known_value_and_a_bounded_trend(news: list[Progress | None]) -> None:
    kept = advance(None, *news)
    told = [p for p in news if p is not None]
    if not told:
        assert kept is None
        return
    assert kept is not None
    for field in ("step", "total_steps", "train_loss", "eta_ns"):
        known = [getattr(p, field) for p in told if getattr(p, field) is not None]
        assert getattr(kept, field) == (known[-1] if known else None)
    assert len(kept.losses) <= LOSS_TREND
    if kept.losses:
        assert kept.losses[-1] == kept.train_loss


listed = st.builds(
    Progress,
    step=st.none() | st.integers(0, 10_000),
    total_steps=st.none() | st.integers(1, 10_000),
    percent=st.none() | st.floats(0, 100, allow_nan=False),
    remaining_s=st.none() | st.floats(0, 10**6, allow_nan=False),
    train_loss=st.none() | st.floats(0, 10, allow_nan=False),
)


@given(st.lists(listed, max_size=12), st.integers(0, 2**40))
def test_a_list_entry_on_top_folds_as_advance_does_and_is_the_kept_object_when_it_tells_nothing(
    entries: list[Progress], start_ns: int
) -> None:
    # on_top is advance and settle written out for one piece (every running job of
    # every list passes there): the two must never tell a job's progress apart.
    kept: Progress | None = None
    for cycle, piece in enumerate([*entries, *entries[-1:]]):
        now = start_ns + cycle * 5 * 10**9
        folded = settle(advance(kept, piece, now_ns=now), now, kept.eta_ns if kept is not None else None)
        fast = on_top(kept, piece, now)
        assert fast == folded
        if kept is not None and folded == kept:
            assert fast is kept  # no news: the caller writes nothing, redraws nothing
        kept = fast


def test_a_countdown_becomes_a_time_by_the_cycles_clock_and_a_summary_says_it_in_a_line() -> None:
    assert settle(Progress(step=3, remaining_s=60), 10**12) == Progress(step=3, eta_ns=10**12 + 60 * 10**9)
    info = ModelInfo("ftjob-1", "bot", "succeeded", fine_tuned_model="ft:gpt-4o-mini:acme::AbC", created=0)
    progress = Progress(step=3000, total_steps=3000, train_loss=0.4123, trained_tokens=1_200_000)
    summary = summary_of(progress, info, (2 * 3600 + 14 * 60) * 10**9)
    assert summary == Summary(8040.0, 3000, 1_200_000, 0.4123, "ft:gpt-4o-mini:acme::AbC")
    assert summary_words(summary, "succeeded") == (
        "succeeded after 2 h 14 m, 3,000 steps, 1,200,000 tokens, final loss 0.412 → ft:gpt-4o-mini:acme::AbC"
    )
    line = text_line(
        Transition("x", "ftjob-1", "bot", "succeeded", "running", "t", None, "t", provider="openai", summary=summary)
    )
    assert line.endswith(
        "running -> succeeded · succeeded after 2 h 14 m, 3,000 steps, 1,200,000 tokens,"
        " final loss 0.412 → ft:gpt-4o-mini:acme::AbC"
    )


def test_a_body_carries_progress_and_summary_and_reads_back_the_same() -> None:
    body = Transition(
        "x",
        "ft-1",
        None,
        "running",
        "queued",
        "2026-12-01T00:00:00Z",
        None,
        "2026-12-01T00:00:01Z",
        provider="together",
        source="together",
        progress=Progress(step=60, total_steps=120, eta_ns=10**18),
    ).to_payload()
    assert body["progress"] == {
        "step": 60,
        "total_steps": 120,
        "percent": 50.0,
        "eta": "2001-09-09T01:46:40Z",
        "train_loss": None,
        "valid_loss": None,
    }
    assert Transition.from_payload(body).to_payload() == body
    # The first provider's bodies keep their fields: it never told progress.
    cohere = Transition("x", "m", None, "STATUS_READY", None, "t", None, "t", summary=Summary())
    assert "summary" not in cohere.to_payload()


def test_progress_gauges_are_for_running_jobs_only() -> None:
    metrics = Metrics("test")

    def cycle(jobs: dict[str, Progress]) -> str:
        metrics.cycle_done(Polled(CycleFindings([], len(jobs), 0, False, progress={"openai": jobs}), 0.1, 1))
        return generate_latest(metrics.registry).decode()

    text = cycle({"ftjob-1": Progress(step=50, total_steps=200, train_loss=0.8), "ftjob-2": Progress(percent=10)})
    assert 'ftwatch_job_progress_ratio{model_id="ftjob-1",source="openai"} 0.25' in text
    assert 'ftwatch_job_train_loss{model_id="ftjob-1",source="openai"} 0.8' in text
    assert 'ftwatch_job_progress_ratio{model_id="ftjob-2",source="openai"} 0.1' in text
    text = cycle({"ftjob-2": Progress(percent=20)})  # ftjob-1 ended
    assert 'model_id="ftjob-1"' not in text
    assert 'ftwatch_job_progress_ratio{model_id="ftjob-2",source="openai"} 0.2' in text


def test_progress_reads_go_round_robin_within_what_the_budget_leaves() -> None:
    plan = ReadPlan(reads=(("b", None),), lazy=frozenset(), reconcile_next=0)
    config = PlanConfig(budget_per_cycle=4)
    # 4 requests: 1 list page, 1 history read (b tells its progress there), 2 left.
    first, start = progress_reads(["a", "b", "c", "d"], plan, config, 1, 0)
    second, _ = progress_reads(["a", "b", "c", "d"], plan, config, 1, start)
    assert (first, second) == (["a", "c"], ["d", "a"])
    assert progress_reads(["a"], plan, PlanConfig(), 1, 0)[0] == ["a"]  # no cap: every running job


@pytest.fixture(params=TELLING)
def api(request: pytest.FixtureRequest) -> Iterator[World]:
    assert simulator_type(request.param).tells_progress  # type: ignore[attr-defined]
    with world(request.param) as running:
        yield running


@pytest.fixture
def clean_env(quiet_env: dict[str, str]) -> dict[str, str]:
    # A budget of 8 requests a cycle (500 a minute): the list and a progress read.
    return quiet_env | {"FTWATCH_POLL__INTERVAL_S": "1"}


def _running(api: World) -> str:
    """The provider's word for a job that trains."""
    return next(s for s in LIFECYCLES[api.provider] if BUILT_IN[api.provider].state_of(s) == "running")


def test_each_providers_progress_reaches_the_body_the_state_the_view_and_its_summary(
    api: World, clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    lifecycle = LIFECYCLES[api.provider]
    running = _running(api)
    job = api.add("trainer", lifecycle[0])
    env = hook_env(api.env(clean_env, tmp_path), receiver)
    run_once(env)  # the baseline

    api.move(job, running)
    api.server.train(job, 30, 100)
    run_once(env)
    body = receiver.received[-1].json()
    assert body["status"] == running
    assert body["progress"]["percent"] == pytest.approx(30, abs=1), body
    if api.server.tells_progress == "events":
        assert body["progress"]["step"] == 30
        assert body["progress"]["train_loss"] > 0

    api.server.train(job, 60, 100)
    run_once(env)  # no transition: how far it is moves in memory, no row is written
    assert len(receiver.received) == 1

    watch = run_cli(["watch", "--once"], env)
    assert watch.returncode == 0, watch.stderr
    line = next(line for line in watch.stdout.splitlines() if job in line)
    assert "█" in line, watch.stdout
    assert "60%" in line
    assert api.provider in line

    api.server.train(job, 100, 100)
    api.move(job, lifecycle[-1])
    run_once(env)
    end = receiver.received[-1].json()
    assert end["state"] == "ready"
    assert "progress" not in end
    summary = end["summary"]
    # The row written with the job's end keeps how far it got.
    kept = SqliteStore(tmp_path / "state.db").load_models()
    (row,) = [state for key, state in kept.items() if key.endswith(job)]
    assert row.progress is not None
    assert row.progress.ratio == pytest.approx(1.0, abs=0.01)
    assert summary["fine_tuned_model"] == end["fine_tuned_model"]
    assert summary["fine_tuned_model"]
    assert summary["duration_s"] is not None
    assert summary["duration_s"] >= 0
    if api.server.tells_progress == "events":
        assert summary["steps"] == 100
        assert summary["final_train_loss"] > 0
        assert summary["trained_tokens"] == 4000
    elif api.provider == "together":
        assert summary["steps"] == 100


def test_bedrock_tells_its_final_loss_in_the_summary(
    clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("bedrock") as api:
        job = api.add("tuned", "InProgress")
        env = hook_env(api.env(clean_env, tmp_path), receiver)
        run_once(env)
        api.move(job, "Completed")
        run_once(env)
        (body,) = [r.json() for r in receiver.received]
        assert body["summary"]["final_train_loss"] == 0.4125
        assert body["summary"]["fine_tuned_model"] == body["fine_tuned_model"]


def test_a_running_daemon_exports_progress_and_drops_the_series_when_the_job_ends(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    with world("openai") as api:
        job = api.add("trainer", "running")
        api.server.train(job, 25, 100)
        port = free_port()
        env = api.env(clean_env, tmp_path) | {"FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}"}
        daemon = Daemon(env)
        try:
            series = f'ftwatch_job_progress_ratio{{model_id="{job}",source="openai"}} 0.25'
            wait_for(lambda: series in _scrape(port), what="the progress series")
            assert f'ftwatch_job_train_loss{{model_id="{job}",source="openai"}}' in _scrape(port)
            api.server.train(job, 50, 100)
            wait_for(lambda: series.replace("0.25", "0.5") in _scrape(port), what="the progress moving")
            api.move(job, "succeeded")
            wait_for(lambda: f'model_id="{job}"' not in _scrape(port), what="the series gone")
        finally:
            assert daemon.stop() == 0


def _scrape(port: int) -> str:
    answer = http_get(f"http://127.0.0.1:{port}/metrics")
    return answer.text if answer is not None else ""


def test_a_progress_read_that_fails_is_that_jobs_view_only(
    clean_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    with world("openai") as api:
        broken, fine = api.add("broken", "running"), api.add("fine", "running")
        for job in (broken, fine):
            api.server.train(job, 10, 100)
        env = hook_env(api.env(clean_env, tmp_path), receiver)
        run_once(env)
        api.server.inject(Fault("malformed", endpoint="list_events", model_id=broken), times=10)
        api.move(fine, "succeeded")
        done = run_once(env)  # exit 0: a view that could not be read holds nothing back
        assert done.stderr.count('"progress.unreadable"') == 1
        assert broken in done.stderr
        assert '"model.failed"' not in done.stderr
        (body,) = [r.json() for r in receiver.received]
        assert body["model_id"] == fine
        assert body["summary"]["steps"] == 10
