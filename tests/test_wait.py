"""`ftwatch wait` and `ftwatch.wait_for`: until a state, another terminal state, or
the timeout; as a subprocess with real exit codes, and as a library call."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import ftwatch
from ftwatch.sim.cohere import CohereSimulator

from .conftest import DEFAULT_KEY, FTWATCH, run_cli, settings_for, wait_for


def _wait(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*FTWATCH, "wait", *args, "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _polled_once(sim: CohereSimulator) -> None:
    """The wait has taken its first look (what it finds then is no transition)."""
    wait_for(lambda: sim.count() > 0, timeout=10, what="the first poll")
    time.sleep(0.3)


def test_wait_exits_0_once_every_model_is_ready_and_prints_each_transition(
    sim: CohereSimulator, base_env: dict[str, str]
) -> None:
    """Two models, queued and fine-tuning: each step is printed as it happens (JSON
    lines), paused is waited through, and the exit is 0 once both are ready."""
    first = sim.add_model("a", "STATUS_QUEUED")
    second = sim.add_model("b", "STATUS_FINETUNING")
    waiting = _wait(base_env, first, second, "--json")
    _polled_once(sim)
    sim.set_status(first, "STATUS_FINETUNING")
    sim.set_status(second, "STATUS_PAUSED")
    time.sleep(0.6)
    assert waiting.poll() is None  # paused is no terminal state
    sim.set_status(first, "STATUS_READY")
    sim.set_status(second, "STATUS_READY")
    out, err = waiting.communicate(timeout=15)
    assert waiting.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x["model_id"], x["status"]) for x in lines if x["model_id"] == first] == [
        (first, "STATUS_FINETUNING"),
        (first, "STATUS_READY"),
    ]
    assert [x["status"] for x in lines if x["model_id"] == second] == ["STATUS_PAUSED", "STATUS_READY"]
    assert not Path(base_env["FTWATCH_STATE__PATH"]).exists()  # no state file


def test_wait_exits_1_when_a_model_fails_instead(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """Waiting for ready, the model fails: exit 1 with one line naming it."""
    model = sim.add_model("a", "STATUS_FINETUNING")
    waiting = _wait(base_env, model)
    _polled_once(sim)
    sim.set_status(model, "STATUS_FAILED")
    out, err = waiting.communicate(timeout=15)
    assert waiting.returncode == 1, err
    assert "failed" in out
    assert f"{model} failed, not ready" in err


def test_wait_for_failed_or_any_terminal_state(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """--until failed is met by a failed model (0) and broken by a ready one (1);
    --until any-terminal takes either; a model already there ends the wait at once."""
    ready = sim.add_model("r", "STATUS_READY")
    failed = sim.add_model("f", "STATUS_FAILED")
    assert run_cli(["wait", failed, "--until", "failed"], base_env).returncode == 0
    assert run_cli(["wait", ready, "--until", "failed"], base_env).returncode == 1
    assert run_cli(["wait", ready, failed, "--until", "any-terminal"], base_env).returncode == 0


def test_wait_times_out_with_124_within_a_second_of_the_timeout(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """A model that never finishes: exit 124 close after --timeout, not an interval later."""
    model = sim.add_model("a", "STATUS_FINETUNING")
    started = time.monotonic()
    done = run_cli(["wait", model, "--timeout", "1.5s", "--interval", "5"], base_env)
    took = time.monotonic() - started
    assert done.returncode == 124, done.stderr
    assert "timed out" in done.stderr
    assert took < 1.5 + 1.0 + 0.6  # the timeout, a second, and the interpreter's start


def test_wait_for_an_unknown_model_or_source_is_exit_2(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """A wrong id, a source that does not exist: one line, exit 2."""
    unknown = run_cli(["wait", "ft-no-such-model"], base_env)
    assert unknown.returncode == 2
    assert "ft-no-such-model not found" in unknown.stderr
    model = sim.add_model("a", "STATUS_READY")
    other = run_cli(["wait", model, "--source", "bedrock"], base_env)
    assert other.returncode == 2
    assert "no source named 'bedrock'" in other.stderr


@pytest.mark.anyio
async def test_wait_for_as_a_library_call_returns_the_final_transitions(
    sim: CohereSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`await ftwatch.wait_for(...)` from Python: the outcome, each model's last
    transition, and TimeoutError when the time is up."""
    import anyio  # noqa: PLC0415

    monkeypatch.setenv("CO_API_KEY", DEFAULT_KEY)
    model = sim.add_model("a", "STATUS_FINETUNING")
    settings = settings_for(sim)

    async def finish_later() -> None:
        await anyio.sleep(0.5)
        sim.set_status(model, "STATUS_READY")

    async with anyio.create_task_group() as group:
        group.start_soon(finish_later)
        outcome = await ftwatch.wait_for([model], until="ready", interval_s=0.1, settings=settings)
    assert outcome.ok
    final = outcome.final()[model]
    assert final is not None
    assert final.status == "STATUS_READY"
    with pytest.raises(TimeoutError):
        await ftwatch.wait_for([sim.add_model("b", "STATUS_QUEUED")], timeout_s=0.5, interval_s=0.1, settings=settings)
