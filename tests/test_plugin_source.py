"""A third party's source, with its own status words, found by its entry point.

The plug-in (in tests/plugins.py, written into a directory of its own as an installed distribution
would be) knows nothing of ftwatch's provider tables: its ``vocabulary`` alone says
that ``SHIPPED`` is ``ready`` and ``BROKEN`` is ``failed``, and every body says so,
without a line of ``model.py`` or ``statuses.py`` touched.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from ftwatch.model import Event, ModelInfo, ModelListing, Transition
from ftwatch.outbox import Route
from ftwatch.poller import Poller, PollerConfig
from ftwatch.sources.protocol import ChecksCredentials, Source, SourceKind
from ftwatch.state import SourceIdentity
from ftwatch.statuses import Vocabulary
from ftwatch.store.sqlite import SqliteStore

from .conftest import notifiers_env, run_cli
from .plugins import ACME_WORDS, install_plugin
from .receiver import Receiver


def test_a_plugin_source_says_its_own_states_in_every_body(
    quiet_env: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"j1": ["bot", "TRAINING"], "j2": ["tagger", "TRAINING"]}))
    site = install_plugin(tmp_path)
    env = quiet_env | notifiers_env({"type": "webhook", "url": receiver.url})
    env |= {
        "PYTHONPATH": str(site),
        "FTWATCH_SOURCES": json.dumps([{"type": "acme", "name": "acme-prod", "jobs_file": str(jobs)}]),
    }
    first = run_cli(["run", "--once"], env)
    assert first.returncode == 0, first.stderr
    listed = run_cli(["models", "-o", "json"], env)
    assert listed.returncode == 0, listed.stderr
    assert {row["id"]: row["state"] for row in json.loads(listed.stdout)} == {"j1": "running", "j2": "running"}

    jobs.write_text(json.dumps({"j1": ["bot", "SHIPPED"], "j2": ["tagger", "BROKEN"]}))
    second = run_cli(["run", "--once"], env)
    assert second.returncode == 0, second.stderr
    bodies = {b["model_id"]: b for b in receiver.bodies()}
    assert {m: (b["status"], b["state"], b["provider"], b["source"]) for m, b in bodies.items()} == {
        "j1": ("SHIPPED", "ready", "acme", "acme-prod"),
        "j2": ("BROKEN", "failed", "acme", "acme-prod"),
    }
    assert bodies["j1"]["previous_status"] == "TRAINING"


class _Memory:
    """An in-process source of a third party's provider, history or snapshot."""

    provider = "acme"
    vocabulary = Vocabulary("acme", ACME_WORDS)

    def __init__(self, kind: SourceKind) -> None:
        self.kind = kind
        self.jobs: dict[str, str] = {}
        self.events: dict[str, list[Event]] = {}

    async def list_models(self) -> ModelListing:
        return ModelListing([ModelInfo(i, i, s, None) for i, s in self.jobs.items()], 1)

    async def get_model(self, model_id: str) -> ModelInfo:
        return ModelInfo(model_id, model_id, self.jobs[model_id])

    async def list_events(self, model_id: str, newer_than_ns: int | None = None) -> list[Event]:
        return self.events.get(model_id, [])


def test_a_source_is_found_by_its_protocols_not_by_its_names() -> None:
    source = _Memory(SourceKind.SNAPSHOT)
    assert isinstance(source, Source)
    assert not isinstance(source, ChecksCredentials)
    assert not isinstance(object(), Source)


def test_a_vocabulary_refuses_a_state_that_is_none() -> None:
    with pytest.raises(ValueError, match="SHIPPED-ish is no normalized state"):
        Vocabulary("acme", {"X": "SHIPPED-ish"})
    words = Vocabulary("acme", ACME_WORDS)
    assert [words.state_of(s) for s in ("SHIPPED", "NEW-WORD", None)] == ["ready", "unknown", "unknown"]
    assert words.is_terminal("BROKEN")
    assert not words.is_terminal("TRAINING")


@pytest.mark.anyio
@pytest.mark.parametrize("kind", [SourceKind.SNAPSHOT, SourceKind.HISTORY])
async def test_a_plugin_of_either_kind_commits_transitions_in_its_own_words(tmp_path: Path, kind: SourceKind) -> None:
    """Through the real poller and store: the state each transition is committed with
    (and read back from the outbox with) is the vocabulary's."""
    source = _Memory(kind)
    source.jobs["j1"] = "TRAINING"
    source.events["j1"] = [Event("TRAINING", 1_000_000_000)]
    store = SqliteStore(tmp_path / "state.db")
    poller = Poller(
        source,
        store,
        SourceIdentity("acme-prod", "acme", "acme-prod"),
        PollerConfig(),
        routes=lambda: [Route("hook")],
    )
    assert (await poller.cycle()).transitions == []  # the first cycle is the baseline
    source.jobs["j1"] = "SHIPPED"
    source.events["j1"].append(Event("SHIPPED", 2_000_000_000))
    (done,) = (await poller.cycle()).transitions
    assert (done.status, done.state, done.provider, done.source) == ("SHIPPED", "ready", "acme", "acme-prod")
    (row,) = await anyio.to_thread.run_sync(store.list_outbox)
    assert row.transition.state == "ready"  # as the outbox gives it back, for delivery
    assert Transition.from_payload(row.transition.to_payload()).state == "ready"
