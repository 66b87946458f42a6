"""``ftwatch run`` end to end: subprocesses, the simulator, real receivers."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from ftwatch.sim.cohere import CohereSimulator, Fault

from .conftest import (
    Daemon,
    baselined,
    hook_env,
    moved_after_baseline,
    notifiers_env,
    run_cli,
    run_here,
    run_once,
    wait_for,
)
from .receiver import Answer, Receiver


def test_first_start_is_a_baseline_then_changes_are_sent_oldest_first(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """The first run sends nothing; later changes are sent oldest first with their previous status."""
    model = sim.add_model("my-classifier", "STATUS_FINETUNING", history=("STATUS_QUEUED",))
    env = baselined(base_env, receiver)
    assert receiver.bodies() == []

    sim.set_status(model, "STATUS_DEPLOYING_API")
    sim.set_status(model, "STATUS_READY", user_id="u-42")
    run_once(env)
    bodies = receiver.bodies()
    assert [(b["previous_status"], b["status"]) for b in bodies] == [
        ("STATUS_FINETUNING", "STATUS_DEPLOYING_API"),
        ("STATUS_DEPLOYING_API", "STATUS_READY"),
    ]
    assert bodies[1]["model_name"] == "my-classifier"
    assert bodies[1]["user_id"] == "u-42"
    assert bodies[0]["user_id"] is None
    assert all(b["type"] == "finetuned_model.status_changed" and b["model_id"] == model for b in bodies)
    assert receiver.received[0].headers["content-type"] == "application/json"

    run_once(env)  # nothing new: nothing sent again
    assert len(receiver.bodies()) == 2


def test_events_at_the_same_instant_are_each_sent_once(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """Events at one instant are each sent once; a twin of the same status is no transition."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = baselined(base_env, receiver)
    at = sim.set_status(model, "STATUS_FINETUNING")
    run_once(env)
    sim.set_status(model, "STATUS_FINETUNING", at_ns=at)  # a twin that arrives late: no change of status
    sim.set_status(model, "STATUS_READY", at_ns=at)
    run_once(env)
    run_once(env)
    bodies = receiver.bodies()
    assert [(b["previous_status"], b["status"]) for b in bodies] == [
        ("STATUS_QUEUED", "STATUS_FINETUNING"),
        ("STATUS_FINETUNING", "STATUS_READY"),
    ]
    assert len({b["id"] for b in bodies}) == 2


def test_filters_by_status_and_model(sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]) -> None:
    """A notifier's statuses and models filters pick what it receives."""
    wanted = sim.add_model("wanted", "STATUS_FINETUNING")
    other = sim.add_model("other", "STATUS_FINETUNING")
    env = hook_env(base_env, receiver, statuses=["READY", "STATUS_FAILED"], models=[wanted])
    run_once(env)
    sim.set_status(wanted, "STATUS_DEPLOYING_API")
    sim.set_status(wanted, "STATUS_READY")
    sim.set_status(other, "STATUS_READY")
    run_once(env)
    assert [(b["model_id"], b["status"]) for b in receiver.bodies()] == [(wanted, "STATUS_READY")]


def test_models_that_appear_later_are_new_jobs(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """When watching all models, a model that appears later has all its events sent."""
    sim.add_model("old", "STATUS_READY", history=("STATUS_QUEUED",))
    env = baselined(base_env, receiver)
    new = sim.add_model("new", "STATUS_QUEUED")
    sim.set_status(new, "STATUS_FINETUNING")
    run_once(env)
    assert [(b["model_name"], b["previous_status"], b["status"]) for b in receiver.bodies()] == [
        ("new", None, "STATUS_QUEUED"),
        ("new", "STATUS_QUEUED", "STATUS_FINETUNING"),
    ]


def test_sigterm_then_restart_sends_no_duplicates(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """A SIGTERM and a restart send nothing twice."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = hook_env(base_env, receiver)
    daemon = daemons(env)
    wait_for(lambda: sim.count("list_models") >= 2, what="a few polls")
    sim.set_status(model, "STATUS_FINETUNING")
    wait_for(lambda: len(receiver.received) == 1, what="first delivery")
    assert daemon.stop(signal.SIGTERM) == 0
    assert "daemon.stopped" in daemon.stderr

    sim.set_status(model, "STATUS_READY")  # while nobody watches
    again = daemons(env)
    wait_for(lambda: len(receiver.received) == 2, what="the change made while stopped")
    polls = sim.count("list_models")
    wait_for(lambda: sim.count("list_models") >= polls + 3, what="more polls")
    assert again.stop(signal.SIGINT) == 0
    assert [b["status"] for b in receiver.bodies()] == ["STATUS_FINETUNING", "STATUS_READY"]


def test_sigkill_while_the_receiver_is_down_loses_nothing(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """SIGKILL while the receiver is down loses nothing; the re-send has the same id and body."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = baselined(base_env, receiver)
    receiver.default = Answer(503, b"down for maintenance")
    daemon = daemons(env)
    sim.set_status(model, "STATUS_FINETUNING")
    sim.set_status(model, "STATUS_READY")
    wait_for(lambda: len(receiver.attempts) >= 2, what="failed attempts")
    daemon.kill()

    receiver.default = Answer(200)
    tried = {json.loads(a.body)["id"]: json.loads(a.body) for a in receiver.attempts}
    restarted = daemons(env)
    wait_for(lambda: len(receiver.received) == 2, what="delivery after restart")
    restarted.stop()
    bodies = receiver.bodies()
    assert [b["status"] for b in bodies] == ["STATUS_FINETUNING", "STATUS_READY"]
    for body in bodies:  # a re-send is the same transition, id and content
        if body["id"] in tried:
            assert tried[body["id"]] == body


def test_one_dead_receiver_does_not_delay_another(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """A receiver that is down delays no other notifier."""
    dead = Receiver().start()
    dead.default = Answer(500)
    try:
        model = sim.add_model("m", "STATUS_QUEUED")
        env = {
            **base_env,
            **notifiers_env({"type": "webhook", "url": dead.url}, {"type": "webhook", "url": receiver.url}),
        }
        daemon = daemons(env)
        wait_for(lambda: sim.count("list_models") >= 1, what="baseline")
        for status in ("STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_READY"):
            sim.set_status(model, status)
        wait_for(lambda: len(receiver.received) == 3, what="the live receiver gets all three")
        assert dead.received == []
        assert len(dead.attempts) >= 1
        daemon.stop()
        assert "notify.failed" in daemon.stderr
    finally:
        dead.stop()


def test_a_permanent_rejection_is_a_dead_letter_with_the_answer(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """A 4xx is a dead letter at once, with the receiver's answer logged."""
    _, env = moved_after_baseline(sim, base_env, receiver, "STATUS_QUEUED", "STATUS_READY")
    receiver.answer(Answer(422, b"schema mismatch"))
    done = run_here(["run", "--once"], env)
    assert done.returncode == 0
    assert "notify.dead_letter" in done.stderr
    assert "schema mismatch" in done.stderr
    run_once(env)
    assert len(receiver.attempts) == 1  # not retried


def test_api_faults_during_a_run_delay_but_lose_nothing(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """429, 5xx, malformed bodies and dropped connections delay transitions, never lose them."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {**hook_env(base_env, receiver), "FTWATCH_COHERE__MAX_ATTEMPTS": "2"}
    daemon = daemons(env)
    wait_for(lambda: sim.count("list_models") >= 1, what="baseline")
    sim.inject(Fault("503"), times=6)
    sim.set_status(model, "STATUS_READY")
    wait_for(lambda: len(receiver.received) == 1, what="delivery after the API recovers")
    daemon.stop()
    assert "poll.failed" in daemon.stderr


def test_a_missing_model_is_logged_and_the_others_go_on(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """A configured model that is 404 is logged once; the others are reported."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {**hook_env(base_env, receiver), "FTWATCH_POLL__MODELS": json.dumps(["ft-missing", model])}
    run_once(env)
    sim.set_status(model, "STATUS_READY")
    done = run_here(["run", "--once"], env)
    assert done.returncode == 0
    assert "model.not_found" in done.stderr
    assert "ft-missing" in done.stderr
    assert [b["status"] for b in receiver.bodies()] == ["STATUS_READY"]


def test_a_refused_key_exits_3_without_echoing_it(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """A refused key is exit 3, with the key's source named and the key never shown."""
    env = {**base_env, "CO_API_KEY": "sk-wrong-secret-123"}
    done = run_cli(["run"], env)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1].startswith("ftwatch: the Cohere API refused the key")
    assert "Traceback" not in done.stderr
    assert "sk-wrong-secret-123" not in done.stderr + done.stdout


def test_stdout_json_is_one_object_per_line_and_nothing_else(sim: CohereSimulator, base_env: dict[str, str]) -> None:
    """The stdout json format prints one body per line and nothing else on stdout."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {**base_env, **notifiers_env({"type": "stdout", "format": "json"}), "FTWATCH_LOG_LEVEL": "debug"}
    run_once(env)
    sim.set_status(model, "STATUS_FINETUNING")
    sim.set_status(model, "STATUS_FAILED")
    done = run_here(["run", "--once"], env)
    lines = done.stdout.splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["STATUS_FINETUNING", "STATUS_FAILED"]
    assert "poll.cycle" in done.stderr


def test_secrets_never_reach_any_output_at_debug(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str], tmp_path: Path
) -> None:
    """At debug level no key, URL token or signing secret reaches stdout or stderr."""
    model = sim.add_model("m", "STATUS_QUEUED")
    slack_url = receiver.url + "/services/T000/B000/slack-token-xyz"
    key_file = tmp_path / "key"
    key_file.write_text(sim.keys.copy().pop())
    env = {
        **base_env,
        "FTWATCH_LOG_LEVEL": "debug",
        "CO_API_KEY": "",
        "FTWATCH_COHERE__API_KEY_FILE": str(key_file),
        **notifiers_env(
            {
                "type": "webhook",
                "url": receiver.url + "?token=hook-token-abc",
                "secret": "whsec_c2VjcmV0LXNpZ25pbmcta2V5",
            },
            {"type": "slack", "webhook_url": slack_url},
        ),
    }
    outputs = []
    for args in (["run", "--once"], ["check-config"], ["notify-test"]):
        done = run_cli(args, env)
        outputs.append(done.stdout + done.stderr)
        sim.set_status(model, "STATUS_READY")
    receiver.default = Answer(500, b"boom")
    done = run_cli(["run", "--once"], env)
    outputs.append(done.stdout + done.stderr)
    everything = "\n".join(outputs)
    assert "api_key" in everything  # check-config did print the config
    for secret in (
        "slack-token-xyz",
        "hook-token-abc",
        "whsec_c2VjcmV0LXNpZ25pbmcta2V5",
        "c2VjcmV0LXNpZ25pbmcta2V5",
        sim.keys.copy().pop(),
    ):
        assert secret not in everything, secret


def test_run_once_with_the_api_down_exits_1_and_still_delivers_what_waited(
    sim: CohereSimulator, receiver: Receiver, base_env: dict[str, str]
) -> None:
    """run --once with the API down exits 1 and still delivers what earlier runs queued."""
    model = sim.add_model("m", "STATUS_QUEUED")
    env = {**hook_env(base_env, receiver), "FTWATCH_COHERE__MAX_ATTEMPTS": "2"}
    run_once(env)
    sim.set_status(model, "STATUS_READY")
    receiver.answer(Answer(503))
    run_once(env)  # detected; its delivery failed and waits in the outbox
    sim.inject(Fault("503"), times=10)
    # Run until the failed delivery's backoff is due (tens of milliseconds here).
    done = wait_for(lambda: (d := run_here(["run", "--once"], env)).returncode == 1 and receiver.received and d)
    assert done.stderr.strip().splitlines()[-1].startswith("ftwatch: the API could not be polled: ")
    assert [b["status"] for b in receiver.bodies()] == ["STATUS_READY"]


def test_a_second_daemon_on_the_same_state_file_is_refused(
    sim: CohereSimulator, base_env: dict[str, str], daemons: Callable[..., Daemon]
) -> None:
    """A second process on one state file is refused with exit 2."""
    first = daemons(base_env)
    wait_for(lambda: sim.count("list_models") >= 1, what="the first daemon polling")
    second = run_cli(["run", "--once"], base_env)
    assert second.returncode == 2
    assert "is in use by another ftwatch process" in second.stderr
    assert first.stop() == 0
    assert run_cli(["run", "--once"], base_env).returncode == 0  # released on exit


def test_bodies_name_their_provider_source_and_state_and_filters_take_states(
    sim: CohereSimulator, base_env: dict[str, str]
) -> None:
    """Every body carries `provider`, `source` and the normalized `state` beside the
    provider's own `status`; a `statuses` filter takes a state ("running": fine-tuning
    and deploying) as well as a status, and "paused" keeps meaning STATUS_PAUSED only."""
    running, paused, everything = Receiver().start(), Receiver().start(), Receiver().start()
    try:
        model = sim.add_model("m", "STATUS_QUEUED")
        env = {
            **base_env,
            **notifiers_env(
                {"type": "webhook", "url": running.url, "statuses": ["running"]},
                {"type": "webhook", "url": paused.url, "statuses": ["paused"]},
                {"type": "webhook", "url": everything.url},
            ),
        }
        run_once(env)
        for status in ("STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_TEMPORARILY_OFFLINE", "STATUS_PAUSED"):
            sim.set_status(model, status)
        sim.set_status(model, "STATUS_READY")
        run_once(env)
        assert [(b["status"], b["state"]) for b in everything.bodies()] == [
            ("STATUS_FINETUNING", "running"),
            ("STATUS_DEPLOYING_API", "running"),
            ("STATUS_TEMPORARILY_OFFLINE", "paused"),
            ("STATUS_PAUSED", "paused"),
            ("STATUS_READY", "ready"),
        ]
        assert {(b["provider"], b["source"], b["type"]) for b in everything.bodies()} == {
            ("cohere", "cohere", "finetuned_model.status_changed")
        }
        assert [b["status"] for b in running.bodies()] == ["STATUS_FINETUNING", "STATUS_DEPLOYING_API"]
        assert [b["status"] for b in paused.bodies()] == ["STATUS_PAUSED"]
    finally:
        for receiver in (running, paused, everything):
            receiver.stop()


def test_a_filter_word_that_is_neither_status_nor_state_is_exit_2(base_env: dict[str, str]) -> None:
    """A typo in `statuses` names itself and the accepted kinds, in one line."""
    env = {**base_env, **notifiers_env({"type": "stdout", "statuses": ["runing"]})}
    done = run_here(["check-config"], env)
    assert done.returncode == 2
    assert "'runing' is no known status or state" in done.stderr
