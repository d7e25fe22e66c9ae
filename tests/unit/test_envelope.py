"""The envelope round-trips, and every way a message can break the contract is a
PermanentError of the right class, carrying the raw bytes where it could not decode."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.schemas import versions
from redis_spanner.schemas.envelope import Event, decode
from redis_spanner.schemas.errors import (
    DecodeError,
    PermanentError,
    UnknownEventType,
    UnsupportedSchemaVersion,
    ValidationError,
    VersionAhead,
)
from redis_spanner.schemas.events import EventType

EVENT = Event(
    "0f8e2c1a-1111", EventType.ROW_CHANGED, "Accounts", ("a-1",), 1_764_124_688_123_456_789
)


def body(**changes: object) -> bytes:
    raw = json.loads(EVENT.encode())
    raw.update(changes)
    return json.dumps({k: v for k, v in raw.items() if v is not ...}).encode()


def test_round_trip_keeps_every_field_and_nanoseconds() -> None:
    """decode(encode(e)) == e, including the nanoseconds of the commit timestamp."""
    decoded = decode(EVENT.encode())
    assert decoded == EVENT
    assert decoded.version % 1000 == 789


def test_attributes_name_the_event_for_triage() -> None:
    """Pub/Sub attributes carry id, type, table and commit time without decoding the body."""
    attrs = EVENT.attributes()
    assert attrs["event_id"] == EVENT.event_id
    assert attrs["event_type"] == "row.changed"
    assert attrs["commit_ts"] == "2025-11-26T02:38:08.123456789Z"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\xff\xfe", DecodeError),
        (b"not json", DecodeError),
        (b"[1, 2]", DecodeError),
        (body(schema_version=2), UnsupportedSchemaVersion),
        (body(schema_version="1"), ValidationError),
        (body(type="row.exploded"), UnknownEventType),
        (body(type=["row.changed"]), UnknownEventType),
        (body(type=None), UnknownEventType),
        (body(commit_ts="yesterday"), ValidationError),
        (body(commit_ts="2026-02-30T00:00:00Z"), ValidationError),
        (body(key="a-1"), ValidationError),
        (body(key=[]), ValidationError),
        (body(key=[1.5]), ValidationError),
        (body(event_id="short"), ValidationError),
        (body(table="Accounts; DROP"), ValidationError),
        (body(payload=[1]), ValidationError),
        (body(extra=1), ValidationError),
        (body(table=...), ValidationError),
    ],
)
def test_contract_breaks_are_permanent_errors(raw: bytes, error: type[Exception]) -> None:
    """Each malformed message raises its own PermanentError subclass, never anything else."""
    with pytest.raises(error):
        decode(raw)


def test_decode_error_keeps_the_raw_bytes() -> None:
    """A message that is not JSON keeps its bytes, so the dead letter can carry them."""
    with pytest.raises(DecodeError) as caught:
        decode(b"\x00garbage")
    assert caught.value.raw == b"\x00garbage"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_the_error_tree(raw: bytes) -> None:
    """Whatever arrives, decode returns an Event or raises a PermanentError."""
    with contextlib.suppress(PermanentError):
        decode(raw)


@given(st.integers(min_value=1, max_value=4_102_444_800 * 10**9))
def test_rfc3339_round_trip(version: int) -> None:
    """Versions survive the RFC 3339 form to the nanosecond."""
    assert versions.parse_rfc3339(versions.to_rfc3339(version)) == version


def test_fixed_width_versions_order_like_integers() -> None:
    """The Redis form of versions compares as strings exactly as the integers do."""
    a, b = 999_999_999, 1_000_000_000_000_000_000
    assert (versions.encode(a) < versions.encode(b)) == (a < b)
    assert len(versions.encode(a)) == len(versions.encode(b))


NOW = 1_764_124_688_000_000_000
HOUR = 3_600_000_000_000


LAST_TIMESTAMP = 253_402_300_799_999_999_999  # 9999-12-31T23:59:59.999999999Z


@given(ahead=st.integers(HOUR + 1, LAST_TIMESTAMP - NOW))
def test_versions_beyond_the_allowed_skew_are_refused_at_decode(ahead: int) -> None:
    """Any commit timestamp more than the allowed skew ahead of the clock is a permanent
    ``version-ahead`` error; one within the skew, or in the past, decodes."""
    far = versions.to_rfc3339(NOW + ahead)
    with pytest.raises(VersionAhead) as refused:
        decode(body(commit_ts=far), max_skew_seconds=3600, now_ns=NOW)
    assert refused.value.reason == "version-ahead"
    assert "REDIS_SPANNER_MAX_VERSION_SKEW_SECONDS" in str(refused.value)
    for fine in (NOW + HOUR, NOW, NOW - ahead % NOW):
        if fine > 0:
            decode(body(commit_ts=versions.to_rfc3339(fine)), max_skew_seconds=3600,
                   now_ns=NOW)


def test_the_skew_defaults_to_an_hour_of_this_clock() -> None:
    """Without arguments decode judges against the real clock and a one-hour skew."""
    import time

    soon = time.time_ns() + HOUR // 2
    assert decode(body(commit_ts=versions.to_rfc3339(soon))).version == soon
    with pytest.raises(VersionAhead):
        decode(body(commit_ts=versions.to_rfc3339(time.time_ns() + 2 * HOUR)))
