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

from dataclasses import replace
from typing import TypeVar

from ftwatch.model import LOSS_TREND, ModelInfo, Progress, Summary, format_timestamp

__all__ = ["advance", "duration_words", "progress_words", "settle", "summary_of", "summary_words"]

_T = TypeVar("_T")


def advance(old: Progress | None, *news: Progress | None) -> Progress | None:
    """``old`` with each newer piece's known values on top, in order; the loss
    trend gains a point when a piece brings a training loss at a new step."""
    current = old
    for new in news:
        if new is None:
            continue
        if current is None:
            current = replace(new, losses=() if new.train_loss is None else (new.train_loss,))
            continue
        losses = _trend(current, new)
        current = Progress(
            step=_newer(new.step, current.step),
            total_steps=_newer(new.total_steps, current.total_steps),
            percent=_newer(new.percent, current.percent),
            eta_ns=_newer(new.eta_ns, current.eta_ns),
            remaining_s=new.remaining_s,
            train_loss=_newer(new.train_loss, current.train_loss),
            valid_loss=_newer(new.valid_loss, current.valid_loss),
            trained_tokens=_newer(new.trained_tokens, current.trained_tokens),
            losses=losses,
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


def _newer(new: _T | None, old: _T | None) -> _T | None:
    return new if new is not None else old


def settle(progress: Progress | None, now_ns: int) -> Progress | None:
    """A countdown (``remaining_s``) as the time it ends, by the cycle's clock."""
    if progress is None or progress.remaining_s is None:
        return progress
    return replace(progress, eta_ns=now_ns + int(progress.remaining_s * 1_000_000_000), remaining_s=None)


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
