"""``ftwatch demo``: the whole watcher against the built-in simulated API.

No key and no network: the simulator listens on 127.0.0.1 and a few models move through
their statuses on a schedule. In a terminal the live view of ``ftwatch watch`` shows
them; in a pipe the same daemon that ``ftwatch run`` starts prints each transition
with the stdout notifier.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from ftwatch.settings import Settings
from ftwatch.sources.cohere_sim import DEFAULT_KEY, Simulator

__all__ = ["SCRIPT", "demo_world", "seed_demo"]

#: (seconds after start, model name, new status). A new job appears at 9 s.
SCRIPT: tuple[tuple[float, str, str], ...] = (
    (1.5, "support-classifier", "STATUS_FINETUNING"),
    (3.0, "summarizer-v2", "STATUS_FAILED"),
    (4.5, "support-classifier", "STATUS_DEPLOYING_API"),
    (6.0, "support-classifier", "STATUS_READY"),
    (7.5, "legal-chat", "STATUS_PAUSED"),
    (9.0, "ner-tagger", "STATUS_QUEUED"),
    (10.5, "ner-tagger", "STATUS_FINETUNING"),
    (12.0, "legal-chat", "STATUS_READY"),
    (13.5, "ner-tagger", "STATUS_FAILED"),
)


def seed_demo(sim: Simulator) -> dict[str, str]:
    """The models that exist before the watcher starts; returns name -> id."""
    return {
        "support-classifier": sim.add_model("support-classifier", "STATUS_QUEUED"),
        "summarizer-v2": sim.add_model("summarizer-v2", "STATUS_FINETUNING", history=("STATUS_QUEUED",)),
        "legal-chat": sim.add_model(
            "legal-chat",
            "STATUS_READY",
            history=("STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_DEPLOYING_API"),
        ),
    }


async def _play(sim: Simulator, ids: dict[str, str]) -> None:
    started = anyio.current_time()
    for at, name, status in SCRIPT:
        await anyio.sleep(max(0.0, started + at - anyio.current_time()))
        if name not in ids:
            ids[name] = sim.add_model(name, status)
        else:
            sim.set_status(ids[name], status)


@contextlib.asynccontextmanager
async def demo_world(duration_s: float) -> AsyncIterator[Settings]:
    """The simulated API on 127.0.0.1 with models that move on a schedule, and the
    settings that watch it (a key file, a state file, a stdout notifier), until the
    block ends. What watches it is the caller's choice: the live view or the daemon."""
    sim = Simulator()
    with tempfile.TemporaryDirectory(prefix="ftwatch-demo-") as tmp:
        key_file = Path(tmp) / "key"
        key_file.write_text(DEFAULT_KEY)
        async with anyio.create_task_group() as group:
            url = await group.start(sim.serve)
            settings = Settings.model_validate(
                {
                    "cohere": {"base_url": url, "api_key_file": key_file, "retry_initial_s": 0.1},
                    "poll": {"interval_s": 0.5},
                    "state": {"path": Path(tmp) / "state.db"},
                    "http": {"listen": ""},
                    "notifiers": [{"type": "stdout", "format": "text"}],
                }
            )
            ids = seed_demo(sim)
            print(
                f"ftwatch demo: simulated fine-tuning API on {url} with {len(ids)} models; "
                f"watching for {duration_s:g}s (Ctrl-C stops)",
                file=sys.stderr,
            )
            group.start_soon(_play, sim, ids)
            yield settings
            group.cancel_scope.cancel()
