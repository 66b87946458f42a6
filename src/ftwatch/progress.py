"""How far a running job is, kept as the latest values: pure, no I/O, no clock.

A job's progress comes in pieces: the list's entry (Together's steps, Fireworks'
percent, OpenAI's ``estimated_finish``), a read of its newest events (OpenAI's and
Azure's metrics events) and the status steps of its history (the progress last
reported before each). :func:`advance` folds them into what the state keeps per job:
each field's newest known value and a short trend of training losses, so a job
that reports every step costs the state the same as one that reports once.
A terminal state turns what was kept into a :class:`~ftwatch.model.Summary`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from ftwatch.model import LOSS_TREND, ModelInfo, Progress, Summary, format_timestamp
from ftwatch.state import ModelState
from ftwatch.statuses import Vocabulary

__all__ = [
    "adds_nothing",
    "advance",
    "duration_words",
    "progress_words",
    "running_progress",
    "settle",
    "summary_of",
    "summary_words",
]


def advance(old: Progress | None, *news: Progress | None, now_ns: int | None = None) -> Progress | None:
    """``old`` with each newer piece's known values on top, in order; the loss
    trend gains a point when a piece brings a training loss at a new step. With
    ``now_ns``, a countdown on top of ``old`` is its ETA at once (:func:`settle`)."""
    current = old
    for new in news:
        if new is None:
            continue
        if current is None:
            current = replace(new, losses=() if new.train_loss is None else (new.train_loss,))
            continue
        eta, remaining = current.eta_ns if new.eta_ns is None else new.eta_ns, new.remaining_s
        if remaining is not None and now_ns is not None:
            eta, remaining = _countdown_end(now_ns, remaining, current.eta_ns), None
        # Positional, without a helper per field: this runs for every running job
        # that reported, every cycle (bench/progress.py).
        current = Progress(
            current.step if new.step is None else new.step,
            current.total_steps if new.total_steps is None else new.total_steps,
            current.percent if new.percent is None else new.percent,
            eta,
            remaining,
            current.train_loss if new.train_loss is None else new.train_loss,
            current.valid_loss if new.valid_loss is None else new.valid_loss,
            current.trained_tokens if new.trained_tokens is None else new.trained_tokens,
            _trend(current, new),
        )
    return current


def _trend(current: Progress, new: Progress) -> tuple[float, ...]:
    """The loss trend with ``new``'s loss: a point more at a new step (or, undated, a
    new value); the same step told again replaces its point. Its last point is always
    the latest loss."""
    losses, loss = current.losses, new.train_loss
    if loss is None:
        return losses
    if losses and current.train_loss is not None:
        same_step = new.step == current.step if new.step is not None else loss == current.train_loss
        if same_step:
            return (*losses[:-1], loss)
    return (*losses, loss)[-LOSS_TREND:]


#: An ETA from a countdown moves only by more than this: a countdown read a little
#: later says the same end, which is no news worth a write or a redraw.
ETA_SLACK_NS = 60 * 1_000_000_000


def settle(progress: Progress | None, now_ns: int, kept_eta_ns: int | None = None) -> Progress | None:
    """A countdown (``remaining_s``) as the time it ends, by the cycle's clock (the
    ETA kept, if the new one is within :data:`ETA_SLACK_NS` of it)."""
    if progress is None or progress.remaining_s is None:
        return progress
    eta = _countdown_end(now_ns, progress.remaining_s, kept_eta_ns)
    p = progress
    return Progress(p.step, p.total_steps, p.percent, eta, None, p.train_loss, p.valid_loss, p.trained_tokens, p.losses)


def _countdown_end(now_ns: int, remaining_s: float, kept_eta_ns: int | None) -> int:
    eta = now_ns + int(remaining_s * 1_000_000_000)
    return kept_eta_ns if kept_eta_ns is not None and abs(eta - kept_eta_ns) < ETA_SLACK_NS else eta


def adds_nothing(kept: Progress, new: Progress, now_ns: int) -> bool:
    """Whether ``new`` tells nothing ``kept`` does not: each value it knows is the kept
    one (a countdown: within the ETA's slack). The common case of a job whose list
    entry did not move, decided without building anything."""
    # The step first: it is what moves most often. Plain comparisons, no generator:
    # this runs for every running job, every cycle.
    n, k = new, kept
    if (
        (n.step is not None and n.step != k.step)
        or (n.percent is not None and n.percent != k.percent)
        or (n.train_loss is not None and n.train_loss != k.train_loss)
        or (n.total_steps is not None and n.total_steps != k.total_steps)
        or (n.valid_loss is not None and n.valid_loss != k.valid_loss)
        or (n.trained_tokens is not None and n.trained_tokens != k.trained_tokens)
    ):
        return False
    if n.remaining_s is not None:
        return k.eta_ns is not None and abs(now_ns + n.remaining_s * 1e9 - k.eta_ns) < ETA_SLACK_NS
    return n.eta_ns is None or n.eta_ns == k.eta_ns


def running_progress(
    state: Mapping[str, ModelState], model_ids: Iterable[str], words: Vocabulary
) -> dict[str, Progress]:
    """How far each of ``model_ids`` that runs is, as ``state`` keeps it."""
    kept = ((model_id, state.get(model_id)) for model_id in model_ids)
    return {
        model_id: row.progress
        for model_id, row in kept
        if row is not None and row.progress is not None and words.state_of(row.cursor.last_status) == "running"
    }


def summary_of(progress: Progress | None, info: ModelInfo, ended_ns: int | None) -> Summary:
    """What a job that reached a terminal state came to, from what is known of it."""
    started = info.created_at_ns
    duration = (
        (ended_ns - started) / 1e9 if started is not None and ended_ns is not None and ended_ns >= started else None
    )
    if progress is None:
        progress = Progress()
    return Summary(
        duration_s=None if duration is None else round(duration, 3),
        steps=progress.step if progress.step is not None else None,
        trained_tokens=progress.trained_tokens,
        final_train_loss=progress.train_loss,
        fine_tuned_model=info.fine_tuned_model,
    )


def duration_words(seconds: float) -> str:
    """``8040`` -> ``2 h 14 m``; ``95`` -> ``1 m 35 s``; ``7`` -> ``7 s``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} m"
    if minutes:
        return f"{minutes} m {secs} s"
    return f"{secs} s"


def summary_words(summary: Summary, verb: str) -> str:
    """One line: ``succeeded after 2 h 14 m, 3,000 steps, final loss 0.412 →
    ft:gpt-4o-mini:acme::AbC`` (what is unknown is left out)."""
    text = verb
    if summary.duration_s is not None:
        text += f" after {duration_words(summary.duration_s)}"
    parts = []
    if summary.steps is not None:
        parts.append(f"{summary.steps:,} steps")
    if summary.trained_tokens is not None:
        parts.append(f"{summary.trained_tokens:,} tokens")
    if summary.final_train_loss is not None:
        parts.append(f"final loss {summary.final_train_loss:.3f}")
    if parts:
        text += ", " + ", ".join(parts)
    if summary.fine_tuned_model:
        text += f" → {summary.fine_tuned_model}"
    return text


def progress_words(progress: Progress) -> str:
    """One line: ``step 500/3,000 (17%), loss 0.830, ETA 2026-12-01T14:32:00Z``."""
    parts = []
    ratio = progress.ratio
    if progress.step is not None:
        total = f"/{progress.total_steps:,}" if progress.total_steps else ""
        parts.append(f"step {progress.step:,}{total}" + (f" ({ratio:.0%})" if ratio is not None else ""))
    elif ratio is not None:
        parts.append(f"{ratio:.0%} done")
    if progress.train_loss is not None:
        parts.append(f"loss {progress.train_loss:.3f}")
    if progress.eta_ns is not None:
        parts.append(f"ETA {format_timestamp(progress.eta_ns, digits=0)}")
    return ", ".join(parts)
