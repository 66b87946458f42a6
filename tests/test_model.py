from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftwatch.model import format_timestamp, human_status, normalized_timestamp, parse_timestamp
from ftwatch.statuses import BUILT_IN, normalize_status


@given(st.integers(min_value=0, max_value=4_000_000_000 * 1_000_000_000))
def test_timestamps_round_trip_to_the_nanosecond(ns: int) -> None:
    """format_timestamp and parse_timestamp round-trip every nanosecond."""
    assert parse_timestamp(format_timestamp(ns)) == ns


@pytest.mark.parametrize(
    ("text", "expected_ns"),
    [
        ("2026-11-01T12:00:04.000000417Z", 417),
        ("2026-11-01T12:00:04.123456Z", 123_456_000),
        ("2026-11-01T12:00:04.1234567Z", 123_456_700),
        ("2026-11-01T12:00:04Z", 0),
        ("2026-11-01T13:00:04.5+01:00", 500_000_000),
        ("2026-11-01T12:00:04.1234567891234Z", 123_456_789),
        ("2026-11-01T12:00:04.25+0000", 250_000_000),
        ("2026-11-01t12:00:04.25z", 250_000_000),
        ("2026-11-01 12:00:04Z", 0),
        ("2026-11-01T06:30:04-05:30", 0),
        ("2026-11-01T12:00:03.5-00:00", -500_000_000),
    ],
)
def test_parse_timestamp_reads_what_rfc3339_allows(text: str, expected_ns: int) -> None:
    """Any fractional digits, z or Z, t or space, offsets with or without a colon."""
    base = int(dt.datetime(2026, 11, 1, 12, 0, 4, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    assert parse_timestamp(text) == base + expected_ns


@given(
    st.integers(min_value=0, max_value=4_000_000_000 * 1_000_000_000),
    st.integers(min_value=0, max_value=9),
    st.sampled_from(["Z", "z", "+00:00", "-0000", "+05:30", "-08:00"]),
)
def test_every_spelling_of_an_instant_normalizes_to_one_string_twice_alike(ns: int, digits: int, zone: str) -> None:
    """normalized_timestamp is the instant in ftwatch's one spelling, remembered or not."""
    sign = -1 if zone.startswith("-") else 1
    offset_s = sign * (int(zone[1:3]) * 3600 + int(zone[-2:]) * 60) if len(zone) > 1 else 0
    written = format_timestamp(ns - ns % 10 ** (9 - digits) + offset_s * 1_000_000_000, digits)[:-1] + zone
    instant = parse_timestamp(written)
    assert normalized_timestamp(written) == normalized_timestamp(written) == format_timestamp(instant)
    assert parse_timestamp(normalized_timestamp(written)) == instant


def test_a_leap_second_sorts_after_its_minute() -> None:
    """23:59:60 is read, and sorts after 23:59:59.999999998 and before the next day."""
    leap = parse_timestamp("2016-12-31T23:59:60Z")
    assert parse_timestamp("2016-12-31T23:59:59.999999998Z") < leap < parse_timestamp("2017-01-01T00:00:00Z")


@pytest.mark.parametrize("text", ["", "yesterday", "2026-11-01 12:00", "2026-13-01T12:00:04Z", "2026-11-01T12:00:04"])
def test_parse_timestamp_rejects_what_is_not_rfc3339(text: str) -> None:
    """What is not RFC 3339 is a ValueError, never a wrong time."""
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_timestamp(text)


def test_status_names_short_long_and_unknown() -> None:
    """READY and STATUS_READY are the same status; an unknown name is None."""
    assert normalize_status("ready") == "STATUS_READY"
    assert normalize_status("STATUS_FAILED") == "STATUS_FAILED"
    assert normalize_status("done") is None
    assert human_status("STATUS_DEPLOYING_API") == "deploying api"
    assert human_status("STATUS_SOMETHING_NEW") == "something new"
    assert human_status("JOB_STATE_WRITING_RESULTS") == "writing results"
    assert human_status(None) == "unknown"


#: Each newer provider's whole status enum, as its API reference and SDK list it.
FULL_ENUMS = {
    "azure_openai": [
        "created",
        "pending",
        "running",
        "succeeded",
        "cancelled",
        "failed",
        "pausing",
        "paused",
        "resuming",
    ],
    "vertex": [
        f"JOB_STATE_{word}"
        for word in [
            "UNSPECIFIED",
            "QUEUED",
            "PENDING",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
            "CANCELLING",
            "CANCELLED",
            "PAUSED",
            "EXPIRED",
            "UPDATING",
            "PARTIALLY_SUCCEEDED",
        ]
    ],
    "together": [
        "pending",
        "queued",
        "running",
        "compressing",
        "uploading",
        "cancel_requested",
        "cancelled",
        "error",
        "user_error",
        "completed",
    ],
    "fireworks": [
        f"JOB_STATE_{word}"
        for word in [
            "UNSPECIFIED",
            "CREATING",
            "RUNNING",
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "DELETING",
            "WRITING_RESULTS",
            "VALIDATING",
            "DELETING_CLEANING_UP",
            "PENDING",
            "EXPIRED",
            "RE_QUEUEING",
            "CREATING_INPUT_DATASET",
            "IDLE",
            "CANCELLING",
            "EARLY_STOPPED",
            "PAUSED",
            "DELETED",
            "ARCHIVED",
        ]
    ],
}


@pytest.mark.parametrize("provider", sorted(FULL_ENUMS))
def test_every_word_of_a_providers_enum_has_its_state_and_a_new_word_never_ends_a_job(provider: str) -> None:
    """The table covers the whole enum (success is ready, a failure failed, a cancel
    on its way still running); a word it does not know is unknown, never terminal."""
    vocabulary = BUILT_IN[provider]
    assert sorted(vocabulary.states) == sorted(FULL_ENUMS[provider])
    ready = {w for w in vocabulary.states if vocabulary.state_of(w) == "ready"}
    expected_ready = {
        "together": {"completed"},
        "fireworks": {"JOB_STATE_COMPLETED", "JOB_STATE_EARLY_STOPPED"},
        "vertex": {"JOB_STATE_SUCCEEDED"},  # not PARTIALLY_SUCCEEDED: no promise of a usable model
        "azure_openai": {"succeeded"},
    }
    assert ready == expected_ready[provider]
    on_its_way = {
        "together": "cancel_requested",
        "fireworks": "JOB_STATE_CANCELLING",
        "vertex": "JOB_STATE_CANCELLING",
        "azure_openai": "pausing",
    }
    assert vocabulary.state_of(on_its_way[provider]) == "running"
    assert not vocabulary.is_terminal(on_its_way[provider])
    assert vocabulary.state_of("JOB_STATE_SOMETHING_NEW") == "unknown"
    assert not vocabulary.is_terminal("something_new")


def test_openais_paused_is_a_known_state_that_ends_no_job() -> None:
    """OpenAI's answers say ``paused`` for a paused job (its status list does not name
    it): before, that was ``unknown``; a ``wait`` must go on through it."""
    openai = BUILT_IN["openai"]
    assert openai.state_of("paused") == "paused"
    assert not openai.is_terminal("paused")


def test_vertexs_expired_ends_a_job_and_paused_does_not() -> None:
    """The SDK's has_ended counts PAUSED and forgets EXPIRED; ftwatch the other way."""
    vertex = BUILT_IN["vertex"]
    assert vertex.is_terminal("JOB_STATE_EXPIRED")
    assert vertex.state_of("JOB_STATE_EXPIRED") == "failed"
    assert not vertex.is_terminal("JOB_STATE_PAUSED")
