"""The Cohere client against the simulated API, over real sockets."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ftwatch.errors import AuthRefusedError, ConfigError
from ftwatch.secrets import cohere_key
from ftwatch.sim.cohere import DEFAULT_KEY, CohereSimulator, Fault
from ftwatch.sources.base import ModelNotFoundError, Source, SourceUnavailableError

from .conftest import source_for

pytestmark = pytest.mark.anyio


def _source(http: httpx.AsyncClient, sim: CohereSimulator, key: str = DEFAULT_KEY, **cohere: object) -> Source:
    return source_for(sim, http, key=key, **cohere)


async def test_lists_every_page_of_models_and_events(sim: CohereSimulator) -> None:
    """Every page is read, whatever page size the API caps to."""
    sim.max_page_size = 3
    ids = [sim.add_model(f"m{i}", "STATUS_READY") for i in range(8)]
    for i in range(7):
        sim.set_status(ids[0], "STATUS_PAUSED" if i % 2 else "STATUS_READY")
    async with httpx.AsyncClient() as http:
        source = _source(http, sim)
        listing = await source.list_models()
        events = await source.list_events(ids[0])
    assert [m.id for m in listing.models] == ids
    assert listing.requests == 3
    assert len(events) == 8
    assert sim.count("list_models") == 3  # 8 models, pages capped at 3
    assert sim.client_names["ftwatch"] == sim.count()


async def test_newest_first_stops_at_the_cursor(sim: CohereSimulator) -> None:
    """Reading newest first stops at the first page older than the cursor."""
    sim.max_page_size = 2
    model = sim.add_model("m", "STATUS_QUEUED")
    stamps = [sim.set_status(model, "STATUS_FINETUNING") for _ in range(9)]
    async with httpx.AsyncClient() as http:
        events = await _source(http, sim).list_events(model, newer_than_ns=stamps[-2])
    assert {e.created_at_ns for e in events} >= set(stamps[-2:])
    assert sim.count("list_events") == 2  # not the 5 pages of the whole history


@pytest.mark.parametrize("kind", ["429", "500", "503", "malformed", "drop"])
async def test_faults_are_retried(sim: CohereSimulator, kind: str) -> None:
    """Each kind of API fault is retried until an answer comes."""
    sim.add_model("m", "STATUS_READY")
    sim.inject(Fault(kind, endpoint="list_models", retry_after_s=0.05), times=2)
    async with httpx.AsyncClient() as http:
        listing = await _source(http, sim).list_models()
    assert [m.name for m in listing.models] == ["m"]
    assert sim.pending_faults() == 0


async def test_retry_after_is_honoured(sim: CohereSimulator) -> None:
    """A 429's Retry-After is waited out before the next try."""
    sim.add_model("m", "STATUS_READY")
    sim.inject(Fault("429", retry_after_s=0.4))
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        await _source(http, sim).list_models()
    assert time.monotonic() - started >= 0.4


async def test_slow_answers_time_out_and_are_retried(sim: CohereSimulator) -> None:
    """An answer slower than the timeout is retried."""
    sim.add_model("m", "STATUS_READY")
    sim.inject(Fault("slow", delay_s=1.0))
    async with httpx.AsyncClient() as http:
        # cohere.timeout_s is each request's own timeout, whatever the client's default.
        listing = await _source(http, sim, timeout_s=0.2).list_models()
    assert len(listing.models) == 1
    assert sim.count("list_models") == 2


async def test_gives_up_after_its_attempts(sim: CohereSimulator) -> None:
    """After max_attempts a request fails with the last error."""
    sim.inject(Fault("503"), times=10)
    async with httpx.AsyncClient() as http:
        with pytest.raises(SourceUnavailableError, match="503"):
            await _source(http, sim, max_attempts=3).list_models()
    assert sim.count("list_models") == 3


async def test_unknown_model_is_not_found(sim: CohereSimulator) -> None:
    """A 404 for a model is ModelNotFoundError."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(ModelNotFoundError):
            await _source(http, sim).list_events("ft-nope")


async def test_unknown_statuses_pass_through(sim: CohereSimulator) -> None:
    """A status the contract does not list passes through unchanged."""
    model = sim.add_model("m", "STATUS_READY")
    sim.set_status(model, "STATUS_SOMETHING_NEW")
    async with httpx.AsyncClient() as http:
        events = await _source(http, sim).list_events(model)
    assert events[-1].status == "STATUS_SOMETHING_NEW"


async def test_refused_key_is_read_again_once(sim: CohereSimulator, tmp_path: Path) -> None:
    """A 401 re-reads the key source; a revoked key is AuthRefusedError without the key."""
    sim.add_model("m", "STATUS_READY")
    key_file = tmp_path / "key"
    key_file.write_text("old-key\n")
    async with httpx.AsyncClient() as http:
        source = source_for(sim, http, api_key_file=str(key_file), auth_retry_s=0, environ={})
        key_file.write_text(DEFAULT_KEY)  # rotated, as a mounted Secret is
        assert len((await source.list_models()).models) == 1
        key_file.write_text("revoked")
        sim.keys = {"another"}
        with pytest.raises(AuthRefusedError) as refused:
            await source.list_models()
    assert "revoked" not in str(refused.value)
    assert "401" in str(refused.value)


def test_missing_key_names_both_ways_to_give_one() -> None:
    """No key: the message names CO_API_KEY and api_key_file."""
    with pytest.raises(ConfigError) as missing:
        cohere_key(None, {}).read()
    assert "CO_API_KEY" in str(missing.value)
    assert "api_key_file" in str(missing.value)


def test_systemd_credential_is_a_key_source(tmp_path: Path) -> None:
    """The systemd credential cohere-api-key is a key source, described as such."""
    (tmp_path / "cohere-api-key").write_text("from-systemd\n")
    source = cohere_key(None, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert source.read().get_secret_value() == "from-systemd"
    assert "systemd credential" in source.describe()


def test_key_sources_in_order() -> None:
    """CO_API_KEY before COHERE_API_KEY; the key is a SecretStr from the start."""
    both = {"CO_API_KEY": "from-co", "COHERE_API_KEY": "from-cohere"}
    assert cohere_key(None, both).read().get_secret_value() == "from-co"
    assert cohere_key(None, {"COHERE_API_KEY": "from-cohere"}).read().get_secret_value() == "from-cohere"
    assert cohere_key(None, both).describe() == "environment CO_API_KEY"
    assert "from-co" not in repr(cohere_key(None, both).read())  # a SecretStr from the start


@pytest.mark.parametrize(
    ("source_type", "variable"),
    [("openai", "OPENAI_BASE_URL"), ("together", "TOGETHER_BASE_URL"), ("cohere", "CO_API_URL")],
)
def test_a_base_url_variable_is_read_as_the_providers_sdk_writes_it(
    source_type: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDKs' variables end in /v1 (OpenAI's, Together's) and may end in a slash;
    ftwatch's paths carry /v1 themselves. A default from the environment is checked as a
    value in the table is: before, it was taken unchecked, and OPENAI_BASE_URL as its
    SDK documents it sent every request to /v1/v1/..."""
    from ftwatch.sources.registry import source_type as type_of  # noqa: PLC0415

    model = type_of(source_type).config_model
    monkeypatch.setenv(variable, "https://proxy.example/v1/" if source_type != "cohere" else "https://proxy.example/")
    assert model.model_validate({"type": source_type}).base_url == "https://proxy.example"  # type: ignore[attr-defined]
    monkeypatch.setenv(variable, "ftp://proxy.example")
    with pytest.raises(ValueError, match="http"):
        model.model_validate({"type": source_type})
