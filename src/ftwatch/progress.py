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

from collections.abc import Iterable, Iterator, Mapping

from ftwatch.model import LOSS_TREND, ModelInfo, Progress, Summary, format_timestamp
from ftwatch.state import ModelState
from ftwatch.statuses import Vocabulary

__all__ = [
    "RunningJobs",
    "advance",
    "duration_words",
    "on_top",
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
            current = new._replace(losses=() if new.train_loss is None else (new.train_loss,))
            continue
        current = _on(current, new, now_ns)
    return current


def _on(k: Progress, n: Progress, now_ns: int | None) -> Progress:
    """``n``'s known values on top of ``k``'s, its loss on ``k``'s trend (with
    ``now_ns``, a countdown as its end). Positional, without a helper per field:
    this runs for every running job that reported, every cycle (bench/progress.py)."""
    eta, remaining = k.eta_ns if n.eta_ns is None else n.eta_ns, n.remaining_s
    if remaining is not None and now_ns is not None:
        eta, remaining = _countdown_end(now_ns, remaining, k.eta_ns), None
    return Progress(
        k.step if n.step is None else n.step,
        k.total_steps if n.total_steps is None else n.total_steps,
        k.percent if n.percent is None else n.percent,
        eta,
        remaining,
        k.train_loss if n.train_loss is None else n.train_loss,
        k.valid_loss if n.valid_loss is None else n.valid_loss,
        k.trained_tokens if n.trained_tokens is None else n.trained_tokens,
        k.losses if n.train_loss is None else _trend(k, n),
    )


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


def on_top(kept: Progress | None, piece: Progress, now_ns: int) -> Progress | None:
    """``settle(advance(kept, piece, now_ns=now_ns), now_ns, kept's ETA)`` for one
    piece (a list's entry alone, the common case) in one pass, and ``kept`` itself
    when the piece tells nothing new: the caller knows by identity that nothing
    moved. It runs for every running job of every list: one fold, no loop, no
    second tuple for the countdown (``bench/progress.py``)."""
    if kept is None:
        return settle(advance(None, piece, now_ns=now_ns), now_ns)
    new = _on(kept, piece, now_ns)
    return kept if new == kept else new


def running_progress(
    state: Mapping[str, ModelState],
    model_ids: Iterable[str],
    words: Vocabulary,
    moved: Mapping[str, Progress] | None = None,
) -> dict[str, Progress]:
    """How far each of ``model_ids`` that runs is, as ``state`` keeps it (or, newer,
    ``moved``: progress kept apart from the rows)."""
    moved = moved or {}
    running: dict[str, Progress] = {}
    for model_id in model_ids:
        row = state.get(model_id)
        if row is None or words.state_of(row.cursor.last_status) != "running":
            continue
        if (progress := moved.get(model_id) or row.progress) is not None:
            running[model_id] = progress
    return running


class RunningJobs(Mapping[str, Progress]):
    """:func:`running_progress` of one cycle's models, worked out when first asked
    (a scrape, the page), not every cycle: with 2,000 running jobs a cycle would
    otherwise pay for a view nobody reads. Asked later, it tells what ``state``
    keeps by then, which is newer, never older."""

    __slots__ = ("_jobs", "_model_ids", "_moved", "_state", "_words")

    def __init__(
        self,
        state: Mapping[str, ModelState],
        model_ids: Iterable[str],
        words: Vocabulary,
        moved: Mapping[str, Progress] | None = None,
    ) -> None:
        self._state, self._model_ids, self._words, self._moved = state, model_ids, words, moved
        self._jobs: dict[str, Progress] | None = None

    def _resolved(self) -> dict[str, Progress]:
        if self._jobs is None:
            self._jobs = running_progress(self._state, self._model_ids, self._words, self._moved)
        return self._jobs

    def __getitem__(self, model_id: str) -> Progress:
        return self._resolved()[model_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolved())

    def __len__(self) -> int:
        return len(self._resolved())


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
