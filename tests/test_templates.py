"""Message templates and the Apprise bridge."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftwatch.model import Transition
from ftwatch.notifiers.slack import slack_message
from ftwatch.sim.cohere import CohereSimulator
from ftwatch.templates import SAMPLE, compile_template

from .conftest import notifiers_env, run_here, wait_for
from .receiver import Answer, Receiver


def test_templates_render_the_transition_fields() -> None:
    """Templates see the transition's fields and the human filter."""
    template = compile_template("{{ model }} ({{ model_id }}) {{ previous_status_human }} → {{ status | human }}")
    assert template.render(SAMPLE) == "sample-model (ft-sample) deploying api → ready"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ model ", "TemplateSyntaxError"),
        ("{{ modle }}", "'modle' is undefined"),
        ("{{ model.__class__.__mro__ }}", "SecurityError"),
        ("{{ ''.__class__.__base__.__subclasses__() }}", "SecurityError"),
        ("{% for i in range(10**9) %}{% endfor %}", "range"),
        (
            "{% for i in range(999) %}{% for j in range(999) %}{% for k in range(999) %}{% endfor %}"
            "{% endfor %}{% endfor %}",
            "longer than",
        ),
        ("{{ 'x' * 100000000 }}", "repetition"),
        ("{{ 10 ** 100000000 }}", "exponent"),
    ],
)
def test_broken_or_escaping_templates_are_rejected(source: str, reason: str) -> None:
    """Broken, escaping or endless templates are refused at load, each saying why."""
    with pytest.raises(ValueError, match=r"^template ") as broken:
        compile_template(source)
    assert reason in str(broken.value)


def test_a_template_that_breaks_on_one_transition_falls_back() -> None:
    # Fine on the sample (which has a previous status), broken on a new job's first event.
    """A template that fails on one transition falls back to the default words."""
    template = compile_template("was {{ previous_status_human.title() }}")
    assert template.render(SAMPLE) == "was Deploying Api"
    first_job = Transition("i", "ft-1", None, "STATUS_QUEUED", None, "2026-01-01T00:00:00.000000000Z", None, "x")
    assert template.render(first_job, fallback="default words") == "default words"


def test_slack_template_words_text_and_blocks() -> None:
    """A Slack template words both text and blocks."""
    message = slack_message(SAMPLE, compile_template(":rocket: {{ model }} went {{ status_human }}"))
    assert message["text"] == ":rocket: sample-model went ready"
    assert message["blocks"][0]["text"]["text"] == ":rocket: sample-model went ready"
    assert "ft-sample" in message["blocks"][1]["elements"][0]["text"]


def test_check_config_rejects_a_broken_template(base_env: dict[str, str], tmp_path: Path) -> None:
    """check-config names the notifier and field of a broken template, exit 2."""
    config = tmp_path / "ftwatch.toml"
    config.write_text(
        '[[notifiers]]\ntype = "slack"\nwebhook_url = "https://hooks.example.com/x"\ntemplate = "{{ nmae }}"\n'
    )
    done = run_here(["check-config", "--config", str(config)], base_env)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "ftwatch: invalid configuration: notifiers[0] (slack).template: "
        "template is broken: UndefinedError: 'nmae' is undefined"
    )


def test_stdout_template_and_webhook_headers(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """The stdout template words lines; webhook header templates fill headers, the body stays."""
    model = sim.add_model("classifier", "STATUS_DEPLOYING_API")
    env = {
        **base_env,
        **notifiers_env(
            {"type": "stdout", "template": "{{ model }}: {{ status_human | upper }}"},
            {"type": "webhook", "url": receiver.url, "headers": {"X-Model": "{{ model_id }}", "X-Team": "ml-platform"}},
        ),
    }
    assert run_here(["run", "--once"], env).returncode == 0
    sim.set_status(model, "STATUS_READY")
    done = run_here(["run", "--once"], env)
    assert done.stdout == "classifier: READY\n"
    [got] = receiver.received
    assert got.headers["x-model"] == model
    assert got.headers["x-team"] == "ml-platform"
    assert got.json()["status"] == "STATUS_READY"  # the body is the contract's, untouched


def test_webhook_headers_cannot_replace_the_signature(base_env: dict[str, str]) -> None:
    """Headers may not replace Content-Type or the webhook-* signature headers."""
    env = {
        **base_env,
        **notifiers_env({"type": "webhook", "url": "https://example.com/h", "headers": {"Webhook-Signature": "v1,x"}}),
    }
    done = run_here(["check-config"], env)
    assert done.returncode == 2
    assert "ftwatch's own" in done.stderr


def test_apprise_delivers_through_json_scheme(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Apprise delivers title and body through its json:// scheme to a real receiver."""
    model = sim.add_model("summarizer", "STATUS_FINETUNING")
    url = receiver.url.replace("http://", "json://")
    env = {
        **base_env,
        **notifiers_env({"type": "apprise", "urls": [url], "template": "{{ model }} -> {{ status_human }}"}),
    }
    assert run_here(["run", "--once"], env).returncode == 0
    sim.set_status(model, "STATUS_FAILED")
    done = run_here(["run", "--once"], env)
    assert done.returncode == 0, done.stderr
    [got] = receiver.bodies()
    assert got["title"] == "summarizer failed"
    assert got["message"] == "summarizer -> failed"


def test_apprise_failure_is_retried_from_the_outbox(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """An Apprise failure stays in the outbox and is retried."""
    model = sim.add_model("m", "STATUS_FINETUNING")
    env = {**base_env, **notifiers_env({"type": "apprise", "urls": [receiver.url.replace("http://", "json://")]})}
    assert run_here(["run", "--once"], env).returncode == 0
    sim.set_status(model, "STATUS_READY")
    receiver.answer(Answer(500))
    failed = run_here(["run", "--once"], env)
    assert "notify.failed" in failed.stderr
    assert receiver.received == []
    # The retry is due after its backoff (tens of milliseconds here): run again until then.
    wait_for(lambda: run_here(["run", "--once"], env).returncode == 0 and receiver.received, what="the retry")
    assert [b["title"] for b in receiver.bodies()] == ["m is ready"]


def test_apprise_without_the_extra_says_how_to_install(base_env: dict[str, str], tmp_path: Path) -> None:
    """Apprise configured but not installed is exit 2 naming the pip command."""
    blocker = tmp_path / "apprise"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**base_env, "PYTHONPATH": str(tmp_path), **notifiers_env({"type": "apprise", "urls": ["json://x"]})}
    done = run_here(["check-config"], env)
    assert done.returncode == 2
    assert "pip install 'ftwatch[apprise]'" in done.stderr
