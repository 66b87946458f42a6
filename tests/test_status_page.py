"""The status page in a real browser: Debian's headless Chromium driven by
Playwright, over a running daemon watching the OpenAI simulator. What a person
sees: the jobs, their states, a progress bar that moves between two of the page's
own refreshes, a hostile model name shown as text; a screenshot is kept in
``build/artifacts/``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import markupsafe
import pytest

from tests.conftest import Daemon, free_port, http_get, http_status, notifiers_env, wait_for
from tests.providers import World, world
from tests.receiver import Receiver

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "artifacts"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


@pytest.fixture
def watched(
    quiet_env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> Iterator[tuple[World, Daemon, str, dict[str, str]]]:
    with world("openai") as api:
        ids = {
            "trainer": api.add("trainer", "running"),
            "hostile": api.add(HOSTILE, "running"),
            "done": api.add("classifier", "succeeded"),
        }
        api.server.train(ids["trainer"], 20, 100)
        port = free_port()
        served = {"FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}", "FTWATCH_POLL__INTERVAL_S": "1"}
        env = api.env(quiet_env | served, tmp_path)
        env |= notifiers_env({"type": "webhook", "url": receiver.url, "name": "hook"})
        daemon = Daemon(env)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _jobs(url) == 3, what="the first poll on the page")
            yield api, daemon, url, ids
        finally:
            assert daemon.stop() == 0


def _jobs(url: str) -> int:
    answer = http_get(f"{url}/api/v1/jobs")
    return len(answer.json()["jobs"]) if answer is not None and answer.status_code == 200 else 0


def test_the_json_has_every_job_and_the_html_escapes_what_the_api_said(
    watched: tuple[World, Daemon, str, dict[str, str]],
) -> None:
    _, _, url, ids = watched
    body = httpx.get(f"{url}/api/v1/jobs").json()
    by_id = {job["model_id"]: job for job in body["jobs"]}
    assert by_id[ids["trainer"]]["state"] == "running"
    assert by_id[ids["trainer"]]["progress"]["step"] == 20
    assert by_id[ids["done"]]["state"] == "ready"
    assert by_id[ids["hostile"]]["name"] == HOSTILE
    assert body["outbox"] == {"hook": {"pending": 0, "dead": 0}}
    page = httpx.get(url + "/")
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert HOSTILE not in page.text
    assert str(markupsafe.escape(HOSTILE)) in page.text  # what Jinja2 writes
    assert "<script" not in page.text


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_a_person_sees_the_jobs_and_a_bar_that_moves_in_chromium(
    watched: tuple[World, Daemon, str, dict[str, str]],
) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    api, _, url, ids = watched
    assert CHROMIUM is not None, "CI installs Debian's chromium (.ci/run)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(java_script_enabled=False, viewport={"width": 1280, "height": 720})
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))
            page.goto(url + "/")
            trainer = page.locator(f'tr[data-model-id="{ids["trainer"]}"]')
            assert trainer.locator(".state").inner_text() == "running"
            assert page.locator(f'tr[data-model-id="{ids["done"]}"] .state').inner_text() == "succeeded"
            # The hostile name is text on the page, nothing more: no image, no alert.
            hostile = page.locator(f'tr[data-model-id="{ids["hostile"]}"] td').first
            assert hostile.inner_text() == HOSTILE
            assert page.locator("img").count() == 0
            before = float(trainer.locator("progress").get_attribute("value") or "nan")
            assert before == pytest.approx(0.2)
            api.server.train(ids["trainer"], 70, 100)
            # The page reloads itself (no script): the bar moves without a click.
            _wait_for_bar(page, ids["trainer"])
            assert trainer.locator(".pct").inner_text() == "70%"
            page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
            assert dialogs == []
        finally:
            browser.close()
    assert (ARTIFACTS / "status-page.png").stat().st_size > 10_000


def _wait_for_bar(page: Page, model_id: str) -> None:
    """Until the page, reloading itself, shows the job past 60%."""
    from playwright.sync_api import Error  # noqa: PLC0415

    bar = page.locator(f'tr[data-model-id="{model_id}"] progress')

    def moved() -> bool:
        try:
            return float(bar.get_attribute("value", timeout=2_000) or 0) > 0.6
        except Error:  # caught between two loads
            return False

    wait_for(moved, timeout=25, what="the bar to move")


def test_ui_false_turns_the_page_and_its_json_off(quiet_env: dict[str, str], tmp_path: Path) -> None:
    with world("openai") as api:
        api.add("trainer", "running")
        port = free_port()
        served = {"FTWATCH_HTTP__LISTEN": f"127.0.0.1:{port}", "FTWATCH_HTTP__UI": "false"}
        env = api.env(quiet_env | served, tmp_path)
        daemon = Daemon(env)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: http_status(url + "/metrics") == 200, what="the port")
            assert http_status(url + "/") == 404
            assert http_status(url + "/api/v1/jobs") == 404
        finally:
            assert daemon.stop() == 0
