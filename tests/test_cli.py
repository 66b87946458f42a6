"""The read-only commands and the demo, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ftwatch.sim.cohere import CohereSimulator

from .conftest import FTWATCH, run_cli


def test_version(base_env: dict[str, str]) -> None:
    """--version prints the installed version and exits 0."""
    done = run_cli(["--version"], base_env)
    assert done.returncode == 0
    assert done.stdout.startswith("ftwatch ")


def test_events_prints_the_whole_history_oldest_first(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """`events` reads every page and prints oldest first, as text and JSON."""
    sim.max_page_size = 2
    model = sim.add_model("m", "STATUS_READY", history=("STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_DEPLOYING_API"))
    sim.set_status(model, "STATUS_PAUSED", user_id="u-7")
    done = run_cli(["events", model, "--json"], base_env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["status"] for r in rows] == [
        "STATUS_QUEUED",
        "STATUS_FINETUNING",
        "STATUS_DEPLOYING_API",
        "STATUS_READY",
        "STATUS_PAUSED",
    ]
    assert rows[-1]["user_id"] == "u-7"
    text = run_cli(["events", model], base_env)
    assert len(text.stdout.splitlines()) == 5
    assert "STATUS_PAUSED" in text.stdout.splitlines()[-1]


def test_events_of_an_unknown_model_is_one_line(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """An unknown model id is one line on stderr and exit 2 (an id that names nothing,
    as for wait and outbox replay), no traceback."""
    done = run_cli(["events", "ft-unknown"], base_env)
    assert done.returncode == 2
    assert done.stderr.strip() == "ftwatch: model ft-unknown not found: check the id with 'ftwatch models'"


def test_models_lists_every_model_with_its_status(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """`models` lists every model of the key with its status, as text and JSON."""
    sim.max_page_size = 2
    for i in range(5):
        sim.add_model(f"model-{i}", "STATUS_READY" if i % 2 else "STATUS_FAILED")
    done = run_cli(["models", "--json"], base_env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["name"], r["status"]) for r in rows][:2] == [("model-0", "STATUS_FAILED"), ("model-1", "STATUS_READY")]
    assert len(rows) == 5
    table = run_cli(["models"], base_env).stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS"]
    assert table[1].split()[1:] == ["model-0", "failed"]


def test_the_demo_needs_no_key_and_shows_every_provider_moving() -> None:
    """The demo runs with no key and no network and prints transitions of every
    provider's jobs, ready and failed ones among them, and no warning."""
    prefixes = ("CO_", "COHERE_", "FTWATCH_", "OPENAI_", "AWS_", "AZURE_", "GOOGLE_", "TOGETHER_", "FIREWORKS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    done = subprocess.run(
        [*FTWATCH, "demo", "--duration", "7"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "finetuning -> failed" in done.stdout  # Cohere
    assert "deploying api -> ready" in done.stdout  # Cohere
    assert "running -> succeeded" in done.stdout  # OpenAI
    assert "in progress -> completed" in done.stdout  # Bedrock, signed SigV4
    for job in ("contoso-support", "gemini-claims", "llama-support", "mixtral-routing"):  # Azure, Vertex, …
        assert f"{job} (" in done.stdout, job
    assert "simulated Cohere, OpenAI, Azure OpenAI, Bedrock, Vertex AI, Together and Fireworks APIs" in done.stderr
    # Its own settings are its own to get right: nothing warns a newcomer of them.
    warnings = [line for line in done.stderr.splitlines() if '"level": "warning"' in line]
    assert warnings == []


def test_the_module_runs_like_the_script() -> None:
    """`python -m ftwatch` behaves like the installed `ftwatch` script."""
    done = subprocess.run([sys.executable, "-m", "ftwatch", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    for command in ("run", "watch", "check-config", "events", "models", "notify-test", "demo"):
        assert command in done.stdout
