"""``ftwatch demo``: the whole watcher against the built-in simulated API.

No key and no network: the simulator listens on 127.0.0.1 and a few models move through
their statuses on a schedule. In a terminal the live view of ``ftwatch watch`` shows
them; in a pipe the same daemon that ``ftwatch run`` starts prints each transition
with the stdout notifier.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from ftwatch.settings import Settings
from ftwatch.sources import bedrock_sim, openai_sim
from ftwatch.sources.bedrock_sim import BedrockSimulator
from ftwatch.sources.cohere_sim import DEFAULT_KEY, Simulator
from ftwatch.sources.openai_sim import OpenAISimulator

__all__ = ["SCRIPT", "demo_world", "seed_demo"]

#: (seconds after start, provider, model name, new status). New jobs appear at 9 s.
SCRIPT: tuple[tuple[float, str, str, str], ...] = (
    (1.5, "cohere", "support-classifier", "STATUS_FINETUNING"),
    (2.0, "openai", "faq-bot", "running"),
    (2.5, "bedrock", "titan-claims", "Completed"),
    (3.0, "cohere", "summarizer-v2", "STATUS_FAILED"),
    (4.5, "cohere", "support-classifier", "STATUS_DEPLOYING_API"),
    (5.0, "openai", "faq-bot", "succeeded"),
    (6.0, "cohere", "support-classifier", "STATUS_READY"),
    (7.0, "bedrock", "titan-tickets", "Stopping"),
    (7.5, "cohere", "legal-chat", "STATUS_PAUSED"),
    (8.5, "bedrock", "titan-tickets", "Stopped"),
    (9.0, "cohere", "ner-tagger", "STATUS_QUEUED"),
    (9.5, "openai", "triage", "validating_files"),
    (10.5, "cohere", "ner-tagger", "STATUS_FINETUNING"),
    (11.0, "openai", "triage", "running"),
    (12.0, "cohere", "legal-chat", "STATUS_READY"),
    (13.0, "openai", "triage", "failed"),
    (13.5, "cohere", "ner-tagger", "STATUS_FAILED"),
)


class _World:
    """The three simulated APIs of the demo (Bedrock's only with botocore installed)."""

    def __init__(self, *, with_bedrock: bool) -> None:
        self.cohere = Simulator()
        self.openai = OpenAISimulator()
        self.bedrock = BedrockSimulator() if with_bedrock else None
        self.ids: dict[tuple[str, str], str] = {}

    def seed(self) -> None:
        """The models and jobs that exist before the watcher starts."""
        self.ids |= {("cohere", name): model_id for name, model_id in seed_demo(self.cohere).items()}
        self.ids[("openai", "faq-bot")] = self.openai.add_job("faq-bot", "queued")
        self.ids[("openai", "intent-v3")] = self.openai.add_job("intent-v3", "succeeded")
        if self.bedrock is not None:
            self.ids[("bedrock", "titan-claims")] = self.bedrock.add_job("titan-claims")
            self.ids[("bedrock", "titan-tickets")] = self.bedrock.add_job("titan-tickets")

    def move(self, provider: str, name: str, status: str) -> None:
        key = (provider, name)
        if provider == "cohere":
            if key not in self.ids:
                self.ids[key] = self.cohere.add_model(name, status)
            else:
                self.cohere.set_status(self.ids[key], status)
        elif provider == "openai":
            if key not in self.ids:
                self.ids[key] = self.openai.add_job(name, status)
            else:
                self.openai.set_status(self.ids[key], status)
        elif self.bedrock is not None:
            self.bedrock.set_status(self.ids[key], status)


def seed_demo(sim: Simulator) -> dict[str, str]:
    """The Cohere models that exist before the watcher starts; returns name -> id."""
    return {
        "support-classifier": sim.add_model("support-classifier", "STATUS_QUEUED"),
        "summarizer-v2": sim.add_model("summarizer-v2", "STATUS_FINETUNING", history=("STATUS_QUEUED",)),
        "legal-chat": sim.add_model(
            "legal-chat",
            "STATUS_READY",
            history=("STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_DEPLOYING_API"),
        ),
    }


async def _play(world: _World) -> None:
    started = anyio.current_time()
    for at, provider, name, status in SCRIPT:
        await anyio.sleep(max(0.0, started + at - anyio.current_time()))
        world.move(provider, name, status)


def _sources(urls: dict[str, str], tmp: Path, *, with_bedrock: bool) -> list[dict[str, Any]]:
    fast = {"retry_initial_s": 0.1}
    (tmp / "cohere-key").write_text(DEFAULT_KEY)
    (tmp / "openai-key").write_text(openai_sim.DEFAULT_KEY)
    sources: list[dict[str, Any]] = [
        {"type": "cohere", "base_url": urls["cohere"], "api_key_file": tmp / "cohere-key"} | fast,
        {"type": "openai", "base_url": urls["openai"], "api_key_file": tmp / "openai-key"} | fast,
    ]
    if with_bedrock:
        # The simulator's own keys, through the AWS chain as any profile would be.
        credentials = tmp / "aws-credentials"
        credentials.write_text(
            f"[ftwatch-demo]\naws_access_key_id = {bedrock_sim.ACCESS_KEY}\n"
            f"aws_secret_access_key = {bedrock_sim.SECRET_KEY}\n"
        )
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
        os.environ["AWS_CONFIG_FILE"] = str(tmp / "aws-config-none")
        sources.append(
            {
                "type": "bedrock",
                "endpoint_url": urls["bedrock"],
                "region": bedrock_sim.REGION,
                "profile": "ftwatch-demo",
            }
            | fast
        )
    return sources


@contextlib.asynccontextmanager
async def demo_world(duration_s: float) -> AsyncIterator[Settings]:
    """The simulated APIs on 127.0.0.1 with models and jobs that move on a schedule,
    and the settings that watch them (key files, a state file, a stdout notifier),
    until the block ends. What watches them is the caller's choice: the live view or
    the daemon."""
    with_bedrock = importlib.util.find_spec("botocore") is not None
    world = _World(with_bedrock=with_bedrock)
    with tempfile.TemporaryDirectory(prefix="ftwatch-demo-") as tmp:
        async with anyio.create_task_group() as group:
            urls = {"cohere": await group.start(world.cohere.serve), "openai": await group.start(world.openai.serve)}
            if world.bedrock is not None:
                urls["bedrock"] = await group.start(world.bedrock.serve)
            settings = Settings.model_validate(
                {
                    "sources": _sources(urls, Path(tmp), with_bedrock=with_bedrock),
                    "poll": {"interval_s": 0.5},
                    "state": {"path": Path(tmp) / "state.db"},
                    "http": {"listen": ""},
                    "notifiers": [{"type": "stdout", "format": "text"}],
                }
            )
            world.seed()
            note = "" if with_bedrock else " (Bedrock too with botocore: pip install 'ftwatch[bedrock]')"
            print(
                f"ftwatch demo: simulated Cohere, OpenAI{' and Bedrock' if with_bedrock else ''} APIs on 127.0.0.1"
                f" with {len(world.ids)} models and jobs; watching for {duration_s:g}s (Ctrl-C stops){note}",
                file=sys.stderr,
            )
            group.start_soon(_play, world)
            yield settings
            group.cancel_scope.cancel()
