"""``ftwatch simulate``: the simulated APIs in the foreground, driven from standard
input, watched by a configuration made of nothing but what it printed."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import FTWATCH, run_cli
from .receiver import Receiver


class Simulate:
    """``ftwatch simulate`` as a subprocess, its output read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*FTWATCH, "simulate", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, start: str, timeout: float = 20) -> list[str]:
        """The lines up to and including the first that starts with ``start``."""
        seen = []
        while True:
            line = self.lines.get(timeout=timeout)
            seen.append(line)
            if line.startswith(start):
                return seen

    def say(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.lines.get(timeout=20)

    def quit(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        return self.proc.wait(timeout=20)


@pytest.fixture
def simulate(quiet_env: dict[str, str]) -> Iterator[type[Simulate]]:
    started: list[Simulate] = []

    class Started(Simulate):
        def __init__(self, args: list[str], env: dict[str, str] = quiet_env) -> None:
            super().__init__(args, env)
            started.append(self)

    yield Started
    for one in started:
        if one.proc.poll() is None:
            one.proc.kill()
            one.proc.wait(timeout=10)


def _config_from(banner: list[str], receiver: Receiver, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A config file of the banner's [[sources]] snippet and a webhook, and its exports."""
    start = banner.index("# Add to your ftwatch.toml:") + 1
    snippet = banner[start : banner.index("# And, in the shell that runs ftwatch, the simulators' keys:")]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in banner if line.startswith("export "))
    config = tmp_path / "ftwatch.toml"
    config.write_text("\n".join(snippet) + f'\n\n[[notifiers]]\ntype = "webhook"\nurl = "{receiver.url}"\n')
    return config, exports


def test_a_user_watches_what_it_printed_and_moves_a_job_by_hand(
    simulate: type[Simulate], quiet_env: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    sim = simulate(["openai", "--empty"])
    banner = sim.until("commands:")
    assert banner[0].startswith("ftwatch simulate: 1 simulated API(s) on 127.0.0.1")
    config, exports = _config_from(banner, receiver, tmp_path)
    assert set(exports) == {"OPENAI_API_KEY"}
    env = quiet_env | exports
    assert run_cli(["run", "--once", "--config", str(config)], env).returncode == 0  # the baseline: no jobs

    answer = sim.say("add openai faq-bot running")
    assert answer.startswith("openai ftjob-")
    assert answer.endswith("faq-bot: running")
    assert sim.say("move openai faq-bot failed").endswith("faq-bot: failed")
    done = run_cli(["run", "--once", "--config", str(config)], env)
    assert done.returncode == 0, done.stderr
    last = receiver.bodies()[-1]
    assert (last["status"], last["state"], last["provider"]) == ("failed", "failed", "openai")
    assert sim.quit() == 0


def test_a_wrong_command_is_one_line_and_the_simulator_goes_on(simulate: type[Simulate]) -> None:
    sim = simulate(["cohere"])
    sim.until("commands:")
    assert sim.say("move cohere legal-chat STATUS_BOGUS").startswith("error: 'STATUS_BOGUS' is no cohere status")
    assert sim.say("move openai x running") == "error: 'openai' is not simulated here; simulated: cohere"
    assert sim.say("dance").startswith("error: 'dance' is no command; commands: add")
    assert sim.say("add cohere legal-chat") == "error: cohere already has a job named 'legal-chat'; move it instead"
    listing = sim.say("list")
    assert listing == "PROVIDER\tID\tNAME\tSTATUS"
    rows = [sim.lines.get(timeout=10) for _ in range(3)]  # the demo's three Cohere models
    assert {row.split("\t")[2] for row in rows} == {"support-classifier", "summarizer-v2", "legal-chat"}
    # A job moved by its id, as `list` shows it.
    model_id = rows[0].split("\t")[1]
    assert sim.say(f"move cohere {model_id} STATUS_READY").endswith(": STATUS_READY")
    assert sim.quit() == 0


def test_an_unknown_provider_is_exit_2_in_one_line(quiet_env: dict[str, str]) -> None:
    done = run_cli(["simulate", "mistral"], quiet_env)  # retired its fine-tuning like Cohere: not watched
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "ftwatch: no simulator of mistral;"
        " simulated: cohere, openai, azure_openai, bedrock, vertex, together, fireworks"
    )
    assert run_cli(["simulate", "--port", "65535", "openai", "cohere"], quiet_env).returncode == 2
