"""Status vocabularies: each provider's words, the normalized states they mean, and
the words a notifier's ``statuses`` or ``[stall] after`` may name.

A source brings its own :class:`Vocabulary` (see :mod:`ftwatch.sources.protocol`): the
engine asks it, never a table of provider names, so a plug-in's words get their right
``state`` without a line changed here. The built-in providers' tables live here, apart
from their HTTP clients, because the configuration's filter words are checked against
them without loading any client. Pure data; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "AZURE_OPENAI",
    "BEDROCK",
    "BUILT_IN",
    "COHERE",
    "FIREWORKS",
    "KNOWN_STATUSES",
    "OPENAI",
    "STATES",
    "TERMINAL_STATES",
    "TOGETHER",
    "VERTEX",
    "Vocabulary",
    "builtin_state",
    "filter_matches",
    "filter_word",
    "normalize_status",
    "provider_word",
    "status_filter",
]

#: The normalized states every provider's statuses map to (bodies' ``state``).
STATES: tuple[str, ...] = ("queued", "running", "ready", "failed", "cancelled", "paused", "deleted", "unknown")

#: The states a job does not leave by itself.
TERMINAL_STATES: frozenset[str] = frozenset({"ready", "failed", "cancelled", "deleted"})


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """One provider's status words and the normalized state of each.

    ``terminal``: the states a job of this provider does not leave by itself (the
    normalized terminal states unless the provider says otherwise). A word missing
    from ``states`` is ``unknown``; a provider with no table (``states`` empty) may
    use the normalized words themselves.
    """

    provider: str
    states: Mapping[str, str]
    terminal: frozenset[str] = field(default=TERMINAL_STATES)

    def __post_init__(self) -> None:
        bad = sorted(state for state in self.states.values() if state not in STATES)
        if bad:
            raise ValueError(
                f"{self.provider}: {', '.join(bad)} is no normalized state; use one of {', '.join(STATES)}"
            )
        object.__setattr__(self, "states", MappingProxyType(dict(self.states)))

    def state_of(self, status: str | None) -> str:
        """``status`` as its normalized state; a word nobody knows yet is ``unknown``."""
        if not self.states:
            word = (status or "").lower()
            return word if word in STATES else "unknown"
        return self.states.get(status or "", "unknown")

    def is_terminal(self, status: str | None) -> bool:
        return self.state_of(status) in self.terminal


#: Cohere's fine-tuning API v1. Others may appear later; they pass through as they are.
COHERE = Vocabulary(
    "cohere",
    {
        "STATUS_QUEUED": "queued",
        "STATUS_FINETUNING": "running",
        "STATUS_DEPLOYING_API": "running",
        "STATUS_READY": "ready",
        "STATUS_FAILED": "failed",
        "STATUS_DELETED": "deleted",
        "STATUS_PAUSED": "paused",
        "STATUS_TEMPORARILY_OFFLINE": "paused",
        "STATUS_UNSPECIFIED": "unknown",
    },
)

#: OpenAI's fine-tuning job statuses (API reference, ``FineTuningJob.status``), and
#: ``paused``: jobs can be paused and resumed now, and their answers say so, though
#: the reference's list does not name it yet. Known, and not an end.
OPENAI = Vocabulary(
    "openai",
    {
        "validating_files": "queued",
        "queued": "queued",
        "running": "running",
        "paused": "paused",
        "succeeded": "ready",
        "failed": "failed",
        "cancelled": "cancelled",
    },
)

#: Azure OpenAI's fine-tuning job statuses (authoring specs 2024-10-21, and the
#: 2025-04-01-preview's pause and resume). ``created`` is never returned; ``pending``
#: is "not yet queued"; pausing and resuming are on their way.
AZURE_OPENAI = Vocabulary(
    "azure_openai",
    {
        "created": "queued",
        "pending": "queued",
        "running": "running",
        "pausing": "running",
        "paused": "paused",
        "resuming": "running",
        "succeeded": "ready",
        "failed": "failed",
        "cancelled": "cancelled",
    },
)

#: Bedrock's ``ModelCustomizationJobStatus``. ``Stopping`` is still on its way (it
#: may yet end ``Stopped``): running until it gets there.
BEDROCK = Vocabulary(
    "bedrock",
    {
        "InProgress": "running",
        "Completed": "ready",
        "Failed": "failed",
        "Stopping": "running",
        "Stopped": "cancelled",
    },
)

#: Together's fine-tune statuses (together-python ``FinetuneJobStatus``). A cancel
#: that was asked for is still on its way (it may yet end ``cancelled``): running.
#: ``compressing`` and ``uploading`` come after training, before ``completed``.
TOGETHER = Vocabulary(
    "together",
    {
        "pending": "queued",
        "queued": "queued",
        "running": "running",
        "compressing": "running",
        "uploading": "running",
        "cancel_requested": "running",
        "cancelled": "cancelled",
        "error": "failed",
        "user_error": "failed",
        "completed": "ready",
    },
)

#: Fireworks' ``JobState`` (gateway API). Success is ``COMPLETED`` or ``EARLY_STOPPED``
#: (there is no SUCCEEDED); ``EXPIRED`` ended without a model; a job being deleted
#: will not train again.
FIREWORKS = Vocabulary(
    "fireworks",
    {
        "JOB_STATE_UNSPECIFIED": "unknown",
        "JOB_STATE_CREATING": "queued",
        "JOB_STATE_CREATING_INPUT_DATASET": "queued",
        "JOB_STATE_VALIDATING": "queued",
        "JOB_STATE_PENDING": "queued",
        "JOB_STATE_RE_QUEUEING": "queued",
        "JOB_STATE_IDLE": "queued",
        "JOB_STATE_RUNNING": "running",
        "JOB_STATE_WRITING_RESULTS": "running",
        "JOB_STATE_CANCELLING": "running",
        "JOB_STATE_COMPLETED": "ready",
        "JOB_STATE_EARLY_STOPPED": "ready",
        "JOB_STATE_FAILED": "failed",
        "JOB_STATE_EXPIRED": "failed",
        "JOB_STATE_CANCELLED": "cancelled",
        "JOB_STATE_PAUSED": "paused",
        "JOB_STATE_DELETING": "deleted",
        "JOB_STATE_DELETING_CLEANING_UP": "deleted",
        "JOB_STATE_DELETED": "deleted",
        "JOB_STATE_ARCHIVED": "deleted",
    },
)

#: Vertex AI's ``JobState`` (aiplatform v1 ``job_state.proto``). ``EXPIRED`` ended
#: without a model (the SDK's ``has_ended`` forgets it); ``PARTIALLY_SUCCEEDED`` is no
#: promise of a usable model, so a ``wait --until ready`` is not told it is; ``PAUSED``
#: is not an end, whatever the SDK counts; ``UPDATING`` and ``CANCELLING`` go on.
VERTEX = Vocabulary(
    "vertex",
    {
        "JOB_STATE_UNSPECIFIED": "unknown",
        "JOB_STATE_QUEUED": "queued",
        "JOB_STATE_PENDING": "queued",
        "JOB_STATE_RUNNING": "running",
        "JOB_STATE_UPDATING": "running",
        "JOB_STATE_CANCELLING": "running",
        "JOB_STATE_PAUSED": "paused",
        "JOB_STATE_SUCCEEDED": "ready",
        "JOB_STATE_PARTIALLY_SUCCEEDED": "failed",
        "JOB_STATE_FAILED": "failed",
        "JOB_STATE_EXPIRED": "failed",
        "JOB_STATE_CANCELLED": "cancelled",
    },
)

#: The built-in providers' vocabularies, by provider.
BUILT_IN: Mapping[str, Vocabulary] = MappingProxyType(
    {v.provider: v for v in (COHERE, OPENAI, AZURE_OPENAI, BEDROCK, VERTEX, TOGETHER, FIREWORKS)}
)

#: The long names of the first provider's statuses, which filters have always taken
#: bare (``READY`` for ``STATUS_READY``).
KNOWN_STATUSES: tuple[str, ...] = tuple(COHERE.states)
_PLAIN = Vocabulary("", {})


def builtin_state(status: str | None, provider: str) -> str:
    """The state of a built-in provider's status (an outbox row written before
    transitions carried their state); a provider without a built-in table may use
    the normalized words themselves."""
    return BUILT_IN.get(provider, _PLAIN).state_of(status)


def normalize_status(name: str) -> str | None:
    """The long name of a known status of the first provider given as ``READY`` or
    ``STATUS_READY``, whatever the case; ``None`` when it is none."""
    upper = name.strip().upper()
    long = upper if upper.startswith("STATUS_") else f"STATUS_{upper}"
    return long if long in KNOWN_STATUSES else None


def provider_word(name: str) -> str | None:
    """Another provider's status as that provider spells it (``Completed``,
    ``succeeded``), whatever the case it is given in; ``None`` if none has it."""
    wanted = name.strip().lower()
    for vocabulary in BUILT_IN.values():
        if vocabulary is COHERE:  # its words are the long names, read above
            continue
        for word in vocabulary.states:
            if word.lower() == wanted:
                return word
    return None


def filter_word(name: str) -> str | None:
    """A notifier ``statuses`` entry in its canonical spelling, or ``None`` if it is
    no status of any provider and no normalized state. A long-named word first (so
    ``paused`` keeps meaning ``STATUS_PAUSED``, as it always has), then a state
    (``running``), then another provider's word (``Completed``)."""
    long = normalize_status(name)
    if long is not None:
        return long
    if name.strip().lower() in STATES:
        return name.strip().lower()
    return provider_word(name)


_STATE_MARK = "state:"


def status_filter(words: Iterable[str]) -> frozenset[str]:
    """What a notifier's ``statuses`` match: provider words, and ``state:…`` tokens.

    A long-named word also matches the other providers' same-named words (``FAILED``:
    OpenAI's ``failed``, Bedrock's ``Failed``), and its state when that state means
    just this status (``READY``: every provider's ``ready``). ``PAUSED`` keeps its
    narrow meaning: the state ``paused`` also holds ``TEMPORARILY_OFFLINE``.
    """
    tokens: set[str] = set()
    for raw in words:
        word = filter_word(raw) or raw
        if word in COHERE.states:
            tokens.add(word)
            short = word.removeprefix("STATUS_").lower()
            if (other := provider_word(short)) is not None:
                tokens.add(other)
            state = COHERE.states[word]
            if [s for s, st in COHERE.states.items() if st == state] == [word]:
                tokens.add(_STATE_MARK + state)
        elif word in STATES:
            tokens.add(_STATE_MARK + word)
        else:
            tokens.add(word)
    return frozenset(tokens)


def filter_matches(tokens: frozenset[str], status: str, state: str) -> bool:
    return status in tokens or _STATE_MARK + state in tokens
