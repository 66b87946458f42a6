"""The request-saving optimisations must not cost a single transition."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftwatch.app import wiring
from ftwatch.plan import CyclePlan, PollMode
from ftwatch.poller import Poller
from ftwatch.ratelimit import TokenBucket
from ftwatch.sim.cohere import DEFAULT_KEY, CohereSimulator

from .conftest import settings_for

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _poller(
    sim: CohereSimulator,
    http: httpx.AsyncClient,
    tmp_path: Path,
    models: tuple[str, ...] = (),
    per_minute: int = 100_000,
) -> Poller:
    settings = settings_for(
        sim,
        cohere={"max_requests_per_minute": per_minute, "retry_initial_s": 0.01},
        poll={"models": list(models), "reconcile_share": 0.0},
        state={"path": str(tmp_path / "state.db")},
    )
    source = wiring.build_source(settings, wiring.ApiAccess(http, environ={"CO_API_KEY": DEFAULT_KEY}))
    return wiring.build_poller(source, wiring.open_store(settings), settings)


async def _watching_one(sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path) -> tuple[str, Poller]:
    """One finetuning model, and a poller whose baseline cycle is done."""
    model = sim.add_model("m", "STATUS_FINETUNING")
    poller = _poller(sim, http, tmp_path)
    await poller.cycle()
    return model, poller


async def _statuses(poller: Poller) -> list[tuple[str, str | None, str]]:
    result = await poller.cycle()
    return [(t.model_id, t.previous_status, t.status) for t in result.transitions]


async def test_first_cycle_reads_only_the_list(sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path) -> None:
    """The first cycle takes its baseline from the list alone, without reading histories."""
    sim.max_page_size = 10
    for i in range(35):
        sim.add_model(f"m{i}", "STATUS_READY", history=("STATUS_QUEUED",))
    poller = _poller(sim, http, tmp_path)
    assert await _statuses(poller) == []
    assert sim.count("list_models") == 4
    assert sim.count("list_events") == 0
    assert await _statuses(poller) == []  # steady: the list alone
    assert sim.count() == 8


async def test_status_change_that_keeps_updated_at_is_seen(
    sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A status change that leaves updated_at alone is still detected."""
    model, poller = await _watching_one(sim, http, tmp_path)
    sim.set_status(model, "STATUS_READY", touch_updated_at=False)
    assert await _statuses(poller) == [(model, "STATUS_FINETUNING", "STATUS_READY")]


async def test_two_changes_between_list_reads_are_two_transitions(
    sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Two changes between two list reads are two transitions, in order."""
    model, poller = await _watching_one(sim, http, tmp_path)
    sim.set_status(model, "STATUS_DEPLOYING_API")
    sim.set_status(model, "STATUS_READY")
    assert await _statuses(poller) == [
        (model, "STATUS_FINETUNING", "STATUS_DEPLOYING_API"),
        (model, "STATUS_DEPLOYING_API", "STATUS_READY"),
    ]
    assert await _statuses(poller) == []


async def test_a_model_deleted_and_one_created_between_reads(
    sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A model deleted and another created between reads: the new one is a new job."""
    old = sim.add_model("old", "STATUS_READY")
    kept = sim.add_model("kept", "STATUS_READY")
    poller = _poller(sim, http, tmp_path)
    await poller.cycle()
    sim.remove_model(old)
    new = sim.add_model("new", "STATUS_QUEUED")
    sim.set_status(kept, "STATUS_PAUSED")
    assert sorted(await _statuses(poller)) == sorted(
        [(new, None, "STATUS_QUEUED"), (kept, "STATUS_READY", "STATUS_PAUSED")]
    )


async def test_the_reconcile_catches_what_the_list_missed(
    sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A change the list hides is found by the round-robin reconcile."""
    ids = [sim.add_model(f"m{i}", "STATUS_FINETUNING") for i in range(5)]
    poller = _poller(sim, http, tmp_path)
    # One list request: one model re-read per cycle.
    poller.reconfigure(replace(poller.config, plan=replace(poller.config.plan, reconcile_share=1.0)))
    await poller.cycle()
    sim.set_status(ids[3], "STATUS_FAILED", hide_from_list=True)
    seen = []
    for _ in range(len(ids)):  # every model is re-read within len(ids) cycles
        seen += await _statuses(poller)
    assert seen == [(ids[3], "STATUS_FINETUNING", "STATUS_FAILED")]
    assert sim.count("list_events") == len(ids)


async def test_configured_models_use_the_list_when_cheaper(
    sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Configured models are read through the list when that takes fewer requests."""
    ids = [sim.add_model(f"m{i}", "STATUS_FINETUNING") for i in range(12)]
    sim.add_model("not-watched", "STATUS_FINETUNING")
    poller = _poller(sim, http, tmp_path, models=(*ids[:10], "ft-gone"))
    result = await poller.cycle()
    assert result.plan is CyclePlan.LIST
    assert result.not_found == ["ft-gone"]
    sim.set_status(ids[2], "STATUS_READY")
    sim.set_status(ids[11], "STATUS_READY")  # not configured: not reported
    assert await _statuses(poller) == [(ids[2], "STATUS_FINETUNING", "STATUS_READY")]
    assert sim.count() == 3  # two list reads, one event read


async def test_one_configured_model_is_asked_directly(
    sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A single configured model is asked directly, without the list."""
    model = sim.add_model("m", "STATUS_FINETUNING")
    poller = _poller(sim, http, tmp_path, models=(model,))
    assert (await poller.cycle()).plan is CyclePlan.PER_MODEL
    sim.set_status(model, "STATUS_READY")
    assert await _statuses(poller) == [(model, "STATUS_FINETUNING", "STATUS_READY")]
    assert sim.count("list_models") == 0


async def test_the_budget_stretches_cycles_instead_of_causing_429(
    sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The simulator refuses past 120 a minute; ftwatch, given the same budget, never hits it."""
    sim.rate_limit_per_minute = 120
    sim.max_page_size = 1
    for i in range(14):
        sim.add_model(f"m{i}", "STATUS_READY")
    poller = _poller(sim, http, tmp_path, per_minute=120)
    for _ in range(2):
        await poller.cycle()  # 28 list requests: a burst of 12, then 1.8 a second
    assert sim.count(code=429) == 0
    times = [r.at for r in sim.requests]
    assert times[-1] - times[0] >= (28 - 12) / 1.8 * 0.95
    # Read off the simulator's log: no window of w seconds holds more than the burst
    # plus w seconds of refill (the minute-long claim itself is the property test below).
    for w in (1.0, 3.0, 5.0):
        for i, start in enumerate(times):
            inside = sum(1 for t in times[i:] if t < start + w)
            assert inside <= 12 + 1.8 * w + 1, (w, inside)


@settings(max_examples=200)
@given(
    per_minute=st.integers(1, 2000),
    gaps=st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=400),
)
def test_the_bucket_never_exceeds_its_budget_in_any_minute(per_minute: int, gaps: list[float]) -> None:
    """The token bucket never allows more than its budget in any 60-second window."""
    bucket = TokenBucket(per_minute, now=0.0)
    now, sent = 0.0, []
    for gap in gaps:
        now += gap
        sent.append(now + bucket.reserve(now))  # when the request really goes out
    sent.sort()
    start = 0
    for end, at in enumerate(sent):
        while sent[start] <= at - 60.0 + 1e-6:  # a microsecond for float rounding
            start += 1
        assert end - start + 1 <= per_minute + 1e-9


async def test_events_mode_reads_every_history_every_cycle(
    sim: CohereSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """poll.mode = events reads every model's events every cycle."""
    ids = [sim.add_model(f"m{i}", "STATUS_FINETUNING") for i in range(3)]
    poller = _poller(sim, http, tmp_path)
    poller.reconfigure(replace(poller.config, plan=replace(poller.config.plan, mode=PollMode.EVENTS)))
    await poller.cycle()
    sim.set_status(ids[1], "STATUS_READY")
    assert await _statuses(poller) == [(ids[1], "STATUS_FINETUNING", "STATUS_READY")]
    assert sim.count("list_events") == 6
