"""The planner, pure: which models a cycle reads, without a socket or a store."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from ftwatch.model import Event, ModelInfo, format_timestamp
from ftwatch.plan import (
    CyclePlan,
    Listing,
    PlanConfig,
    PollMode,
    choose_route,
    plan_reads,
    reconcile_window,
    unknown_are_history,
)
from ftwatch.snapshot import diff_snapshots
from ftwatch.state import Cursor, DiffContext, Fetched, ModelState, ReadWindow, SourceIdentity
from ftwatch.statuses import OPENAI

S = 1_000_000_000
T0 = 1_700_000_000 * S


def _info(model_id: str, status: str = "STATUS_FINETUNING", at_ns: int | None = T0) -> ModelInfo:
    return ModelInfo(model_id, model_id, status, format_timestamp(at_ns) if at_ns is not None else None)


def _idle(infos: list[ModelInfo]) -> dict[str, ModelState]:
    """Known models whose list entry has not moved since the last commit."""
    return {
        i.id: ModelState(Cursor(T0, frozenset(), i.status, horizon_ns=T0), i.name, i.status, i.updated_at)
        for i in infos
    }


ids = st.lists(st.text("abcdefghij0123456789", min_size=1, max_size=6), min_size=1, max_size=60, unique=True)


@given(
    models=ids,
    list_requests=st.integers(1, 20),
    share=st.floats(0.01, 2.0),
    budget=st.one_of(st.none(), st.integers(0, 50)),
)
def test_the_reconcile_revisits_every_idle_model_in_time_and_keeps_to_the_budget(
    models: list[str], list_requests: int, share: float, budget: int | None
) -> None:
    """Within ceil(n / size) cycles every idle model is re-read; no cycle spends more
    than the budget on listing and reconciling."""
    listed = [_info(m) for m in models]
    state = _idle(listed)
    config = PlanConfig(reconcile_share=share, budget_per_cycle=budget)
    size = max(1, math.floor(list_requests * share))
    if budget is not None:
        size = min(size, max(0, budget - list_requests))
    size = min(size, len(models))
    seen: set[str] = set()
    position = 0
    cycles = math.ceil(len(models) / size) if size else 3
    for _ in range(cycles):
        plan = plan_reads(
            config,
            state,
            Listing(listed, requests=list_requests),
            baseline=False,
            catch_up_from=None,
            reconcile_next=position,
        )
        position = plan.reconcile_next
        assert plan.lazy == frozenset()
        assert len(plan.reads) == size
        if budget is not None:
            assert list_requests + len(plan.reads) <= max(budget, list_requests)
        seen |= {model_id for model_id, _ in plan.reads}
    assert seen == (set(models) if size else set())


@given(models=ids, snapshot=st.booleans(), dated=st.booleans())
def test_a_first_cycle_reads_no_history(models: list[str], snapshot: bool, dated: bool) -> None:
    """On empty state, every listed model is a baseline from the list: nothing is read
    (a history source needs the list's time for that; a snapshot source does not)."""
    listed = [_info(m, at_ns=T0 if dated else None) for m in models]
    plan = plan_reads(PlanConfig(), {}, Listing(listed, snapshot=snapshot), baseline=True, catch_up_from=None)
    if snapshot or dated:
        assert plan.reads == ()
        assert plan.lazy == frozenset(models)
    else:  # a history model without a time cannot be a lazy baseline: it is read
        assert {m for m, _ in plan.reads} == set(models)


@given(models=ids, snapshot=st.booleans())
def test_a_catch_up_reads_what_moved_inside_its_window_only(models: list[str], snapshot: bool) -> None:
    half = len(models) // 2
    recent, old = models[:half], models[half:]
    listed = [_info(m, at_ns=T0 + 3600 * S) for m in recent] + [_info(m, at_ns=T0) for m in old]
    plan = plan_reads(
        PlanConfig(clock_skew_ns=0), {}, Listing(listed, snapshot=snapshot), baseline=True, catch_up_from=T0 + 60 * S
    )
    assert {m for m, _ in plan.reads} == set(recent)
    assert plan.lazy == frozenset(old)


def test_what_moved_is_read_from_its_horizon_and_the_rest_waits() -> None:
    listed = [_info("a"), _info("b"), _info("c", status="STATUS_READY")]
    state = _idle([_info("a"), _info("b"), _info("c")])
    plan = plan_reads(PlanConfig(reconcile_share=0), state, Listing(listed), baseline=False, catch_up_from=None)
    assert plan.reads == (("c", T0),)


def test_events_mode_reads_every_history_every_cycle() -> None:
    listed = [_info("a"), _info("b")]
    config = PlanConfig(mode=PollMode.EVENTS)
    plan = plan_reads(config, _idle(listed), Listing(listed), baseline=False, catch_up_from=None)
    assert [m for m, _ in plan.reads] == ["a", "b"]


def test_a_snapshot_job_is_read_when_its_status_moved_back_to_its_cursor_less_the_lookback() -> None:
    state = {"j": ModelState(Cursor(T0, frozenset(), "running"), "j", "running")}
    config = PlanConfig(lookback_ns=300 * S)
    moved = plan_reads(
        config, state, Listing([_info("j", "succeeded")], snapshot=True), baseline=False, catch_up_from=None
    )
    same = plan_reads(
        config, state, Listing([_info("j", "running")], snapshot=True), baseline=False, catch_up_from=None
    )
    assert moved.reads == (("j", T0 - 300 * S),)
    assert same.reads == ()


@given(configured=st.integers(0, 40), cost=st.one_of(st.none(), st.integers(1, 40)), mode=st.sampled_from(PollMode))
def test_the_route_is_the_cheaper_one(configured: int, cost: int | None, mode: PollMode) -> None:
    config = PlanConfig(models=tuple(f"m{i}" for i in range(configured)), mode=mode)
    route = choose_route(config, cost)
    if configured == 0 or mode is not PollMode.AUTO:
        assert route is CyclePlan.LIST
    elif configured == 1:
        assert route is CyclePlan.PER_MODEL
    else:
        assert route is (CyclePlan.LIST if cost is None or cost < configured else CyclePlan.PER_MODEL)


def test_unknown_models_are_history_unless_all_were_watched_already() -> None:
    assert unknown_are_history(fresh=True, configured=False, committed_scope="all")
    assert unknown_are_history(fresh=False, configured=True, committed_scope="all")
    assert unknown_are_history(fresh=False, configured=False, committed_scope='["a"]')  # the scope widened
    assert not unknown_are_history(fresh=False, configured=False, committed_scope="all")


def test_an_empty_idle_list_keeps_the_reconcile_where_it_was() -> None:
    assert reconcile_window([], PlanConfig(), 5, 0, 7) == ([], 7)


@given(
    steps=st.lists(st.sampled_from(sorted(OPENAI.states)), min_size=1, max_size=8),
    gaps=st.lists(st.integers(1, 5), min_size=8, max_size=8),
)
def test_the_snapshot_differ_reports_a_change_once(steps: list[str], gaps: list[int]) -> None:
    """Whatever the steps, the same snapshot read twice reports nothing the second time,
    and the committed state always ends at the snapshot's status."""
    context = DiffContext(
        SourceIdentity("o", "openai", "o"), OPENAI, ReadWindow(baseline=False, detected_at_ns=T0 + 99 * S)
    )
    state: dict[str, ModelState] = {"j": ModelState(Cursor(T0, frozenset(), "queued"), "j", "queued")}
    at = T0
    history = []
    for step, gap in zip(steps, gaps, strict=False):
        at += gap * S
        history.append(Event(step, at))
    info = ModelInfo("j", "j", steps[-1], format_timestamp(at))
    first = diff_snapshots(state, {"j": Fetched(info, history)}, context)
    state |= first.changed
    again = diff_snapshots(state, {"j": Fetched(info, history)}, context)
    assert again.transitions == []
    assert state["j"].cursor.last_status == steps[-1]
    assert all(t.state == OPENAI.state_of(t.status) for t in first.transitions)
