"""``ftwatch demo``: the whole watcher against the built-in simulated API.

No key and no network: the simulator listens on 127.0.0.1 and a few models move through
their statuses on a schedule. In a terminal the live view of ``ftwatch watch`` shows
them; in a pipe the same daemon that ``ftwatch run`` starts prints each transition
with the stdout notifier.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import anyio

from ftwatch.daemon import Daemon
from ftwatch.logs import configure_logging
from ftwatch.settings import Settings
from ftwatch.simulator import DEFAULT_KEY, Simulator
from ftwatch.watch import watch_models

__all__ = ["SCRIPT", "run_demo", "seed_demo"]

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


async def run_demo(duration_s: float) -> int:
    configure_logging(os.environ.get("FTWATCH_LOG_LEVEL", "warning"))
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
            if sys.stdout.isatty():
                # A person at a terminal gets the live view of ftwatch watch.
                await watch_models(settings, [], 0.5, live=True, duration_s=duration_s)
            else:
                daemon = Daemon(settings, None)

                async def stop_later() -> None:
                    await anyio.sleep(duration_s)
                    daemon.stop()

                group.start_soon(stop_later)
                await daemon.run()
            group.cancel_scope.cancel()
    return 0
