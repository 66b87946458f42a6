"""``ftwatch watch`` as a person sees it: in a real terminal (tmux), and in a pipe."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftwatch.sim.cohere import CohereSimulator, Fault

from .conftest import FTWATCH, run_cli, wait_for

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by .ci/run")


class Terminal:
    """A tmux session on a private server: type into it, read its screen."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.socket = name
        self.env = env

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout

    def start(self, command: str, width: int = 110, height: int = 30) -> None:
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def wait_screen(self, text: str, timeout: float = 15) -> str:
        return wait_for(lambda: (s := self.screen()) and text in s and s, timeout, what=f"{text!r} on screen")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, check=False)


@pytest.fixture
def terminal(base_env: dict[str, str], tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(f"ftwatch-{tmp_path.name}", {**base_env, "TERM": "xterm-256color"})
    yield term
    term.close()


def _command(tmp_path: Path, *args: str) -> str:
    # Keep the pane after exit and record the exit code where the test can read it.
    ftwatch = " ".join(shlex.quote(part) for part in [*FTWATCH, "watch", *args])
    return f"{ftwatch}; echo $? > {tmp_path / 'exit'}; sleep 30"


@needs_tmux
def test_live_view_shows_a_change_and_ctrl_c_exits_0(sim: CohereSimulator, terminal: Terminal, tmp_path: Path) -> None:
    """In a terminal the table shows a change, redraws on resize, and Ctrl-C exits 0."""
    model = sim.add_model("support-classifier", "STATUS_FINETUNING", history=("STATUS_QUEUED",))
    sim.add_model("summarizer", "STATUS_READY")
    terminal.start(_command(tmp_path, "--interval", "0.2"))
    screen = terminal.wait_screen("support-classifier")
    assert "◐ finetuning" in screen
    assert "NAME" in screen
    assert "STATUS" in screen
    assert "LAST CHANGE" in screen

    sim.set_status(model, "STATUS_READY")
    screen = terminal.wait_screen("finetuning -> ready")
    assert "Recent transitions" in screen

    assert "…" not in screen
    terminal.tmux("resize-window", "-t", "t", "-x", "40")
    # Redrawn for 40 columns: the table shrinks its columns and cuts names short.
    screen = terminal.wait_screen("support-")
    screen = terminal.wait_screen("…")
    assert "summarizer" in screen

    terminal.tmux("send-keys", "-t", "t", "C-c")
    wait_for(lambda: (tmp_path / "exit").exists() and (tmp_path / "exit").read_text().strip(), what="exit")
    assert (tmp_path / "exit").read_text().strip() == "0"
    assert "Traceback" not in terminal.screen()


@needs_tmux
def test_api_errors_show_in_the_status_line(sim: CohereSimulator, terminal: Terminal, tmp_path: Path) -> None:
    """API errors appear in the live view's status line."""
    model = sim.add_model("m", "STATUS_READY")
    terminal.start(_command(tmp_path, model, "--interval", "0.2"))
    terminal.wait_screen("polled")
    sim.inject(Fault("503"), times=1000)
    screen = terminal.wait_screen("API error")
    assert "503" in screen
    terminal.tmux("send-keys", "-t", "t", "C-c")
    wait_for(lambda: (tmp_path / "exit").exists() and (tmp_path / "exit").read_text().strip() == "0", what="exit 0")


def test_in_a_pipe_it_prints_one_line_per_transition(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """Piped, watch prints one plain line per transition."""
    model = sim.add_model("m", "STATUS_QUEUED")
    proc = subprocess.Popen(
        [*FTWATCH, "watch", "--interval", "0.2"],
        env=base_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: sim.count("list_models") >= 1, what="baseline")
        sim.set_status(model, "STATUS_FINETUNING")
        sim.set_status(model, "STATUS_READY")
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert lines[0].rstrip().endswith("m (" + model + ")  queued -> finetuning")
    assert lines[1].rstrip().endswith("finetuning -> ready")


def test_once_prints_the_table_and_exits(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """watch --once prints the table once and exits 0."""
    sim.add_model("alpha", "STATUS_READY")
    sim.add_model("beta", "STATUS_FAILED")
    done = run_cli(["watch", "--once"], base_env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "ID", "STATUS", "PROGRESS", "FOR", "LAST", "CHANGE"]
    assert "alpha" in lines[1]
    assert "ready" in lines[1]
    assert "beta" in lines[2]
    assert "failed" in lines[2]


def test_watch_needs_only_a_key(base_env: dict[str, str]) -> None:
    """watch needs only CO_API_KEY: no config file, no state file."""
    env = {k: v for k, v in base_env.items() if k != "CO_API_KEY"}
    done = run_cli(["watch", "--once"], env)
    assert done.returncode == 2
    assert "CO_API_KEY" in done.stderr


def test_watch_refused_key_is_exit_3(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """watch with a refused key exits 3."""
    done = run_cli(["watch", "--once"], {**base_env, "CO_API_KEY": "nope"})
    assert done.returncode == 3
