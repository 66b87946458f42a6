"""What ftwatch remembers of each model, and the words for it.

Frozen data only, no I/O: the planner, the differs and the stall check read these,
the stores keep them.

Glossary:

- **source**: one configured provider account (a ``[[sources]]`` table): its name is
  the bodies' ``source``; its **provider** is the API's word (``openai``).
- **namespace**: where a source's models live in a state several sources share
  (``openai/ftjob-1``); the legacy source keeps bare keys (:mod:`ftwatch.compat`).
- **scope**: which models a source watched at its last commit (``all``, or the
  configured list). A model that appears while ``all`` was watched is a new job;
  one that appears because the scope widened is history.
- **cursor**: how far into one model's history ftwatch has looked (:class:`Cursor`).
- **horizon**: below it, events are history; at or after it, an event not yet in
  the cursor is new (late events within the look-back are caught this way).
- **lazy baseline**: a first cycle takes each model's status from the list alone,
  without reading a single history: what it shows is history, not news.
- **catch-up**: a start on empty state with ``[poll] catch_up``: what happened in
  that window is reported instead of taken as baseline.
- **reconcile**: a few idle models re-read each cycle, round robin, as a safety net
  against a list that failed to say they moved.
- **stay**: the time a model spends in one status; one stall alert per stay.
- **progress**: how far a running job is (step, total, loss, ETA), the latest
  values only; a terminal state turns it into the body's ``summary``.
- **gone**: a known job missing from a full listing (deleted, aged out): kept,
  counted apart, cleared if it comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ftwatch.model import Event, ModelInfo, Progress, Transition
from ftwatch.statuses import Vocabulary

__all__ = [
    "DEFAULT_CLOCK_SKEW_NS",
    "DEFAULT_LOOKBACK_NS",
    "EMPTY",
    "Cursor",
    "CycleDiff",
    "DiffContext",
    "EventKey",
    "Fetched",
    "ModelState",
    "ReadWindow",
    "SourceIdentity",
    "UndatedKey",
]

#: The ``[poll]`` defaults of the look-back (``lookback_s``) and the clock skew (``clock_skew_s``).
DEFAULT_LOOKBACK_NS = 300 * 1_000_000_000
DEFAULT_CLOCK_SKEW_NS = 2 * 1_000_000_000

#: What tells dated events apart: time, status, user id, and the position among events
#: identical in all three (two identical events are still two events).
EventKey = tuple[int, str, str, int]
#: The same for events without a time: status, user id, position.
UndatedKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far into one model's history ftwatch has looked.

    ``at_ns`` is the newest ``created_at`` seen (``None``: no dated event seen yet).
    ``recent`` holds every event seen at or after ``horizon_ns``: an event at or
    after the horizon that is not in it is new, an event before it is history.
    """

    at_ns: int | None
    recent: frozenset[EventKey]
    last_status: str | None
    #: A baseline taken from the model list without reading events: ``at_ns`` is the
    #: list's ``updated_at`` and ``last_status`` the status it showed.
    lazy: bool = False
    #: Below this, events are history. ``None`` with ``at_ns``: nothing seen yet.
    horizon_ns: int | None = None
    undated: frozenset[UndatedKey] = frozenset()


EMPTY = Cursor(None, frozenset(), None)


@dataclass(frozen=True, slots=True)
class ModelState:
    """What the store keeps of one model: its cursor, its name, and how the list showed it."""

    cursor: Cursor
    name: str | None = None
    list_status: str | None = None
    list_updated: str | None = None
    #: The stay (status and since) a stall alert was queued for: one alert per stay,
    #: also across restarts.
    stalled: str | None = None
    #: When the model (job) was first missing from a full listing: gone from the
    #: API (deleted, aged out). Kept, counted apart; cleared if it comes back.
    gone: str | None = None
    #: When ftwatch first saw the current stay, by its own clock: a snapshot job
    #: whose provider dates nothing still gets stall alerts (the cursor's time is
    #: only ever the provider's).
    noticed_ns: int | None = None
    #: How far the job was at the last cycle, where its provider tells: the latest
    #: values (:mod:`ftwatch.progress`), kept past its end for what it came to.
    progress: Progress | None = None

    def with_progress(self, progress: Progress | None) -> ModelState:
        """This row with ``progress`` (positional: every running job, every cycle)."""
        return ModelState(
            self.cursor,
            self.name,
            self.list_status,
            self.list_updated,
            self.stalled,
            self.gone,
            self.noticed_ns,
            progress,
        )


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """Who a poller speaks for: the source's name (bodies' ``source``), its
    provider, and its namespace in the state."""

    name: str
    provider: str
    namespace: str


@dataclass(frozen=True, slots=True)
class Fetched:
    """One model as a cycle read it: the list's entry, and its events if read."""

    info: ModelInfo
    #: ``None``: not read this cycle.
    events: list[Event] | None = None
    #: A baseline from the list: no events read, none to read.
    lazy_baseline: bool = False
    #: What a read of its newest progress found this cycle (a source that
    #: :class:`~ftwatch.sources.protocol.ReadsProgress`).
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class ReadWindow:
    """How a cycle's reads are judged: whether models never seen are history, when
    the cycle saw what it read, and how late an event or how far behind a clock may
    be and still count."""

    #: Models never seen are history (a first start, a widened scope).
    baseline: bool
    detected_at_ns: int
    #: A start on empty state that catches up: from when its news counts.
    catch_up_from: int | None = None
    #: Late events this far below the newest are still news, once (the horizon).
    lookback_ns: int = DEFAULT_LOOKBACK_NS
    #: How far a list's ``updated_at`` may lag the event behind it.
    clock_skew_ns: int = DEFAULT_CLOCK_SKEW_NS


@dataclass(frozen=True, slots=True)
class DiffContext:
    """What a differ is told of the cycle besides the state and what was read."""

    identity: SourceIdentity
    vocabulary: Vocabulary
    window: ReadWindow
    #: How far the jobs whose progress moved since their row was last written are
    #: (newer than the rows' own ``progress``; see :attr:`CycleDiff.progressed`).
    progress: Mapping[str, Progress] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CycleDiff:
    """What a differ found in one cycle: the rows to commit, the transitions (in
    each model's order), how many events it read, and the models whose undated
    events it took (``baseline.undated``: as history; ``event.undated``: as news)."""

    changed: dict[str, ModelState]
    transitions: list[Transition]
    events_read: int
    undated: tuple[tuple[str, str, int], ...] = ()
    #: Jobs whose only change is how far they are: kept in memory, apart from the
    #: rows, not written (a job that reports every cycle costs no write, nor a new
    #: row, until its row changes).
    progressed: dict[str, Progress] = field(default_factory=dict)
