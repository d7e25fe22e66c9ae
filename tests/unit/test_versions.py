"""Versions: Spanner timestamps as integer nanoseconds, and their fixed-width form in Redis."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.schemas import versions

NANOS = st.integers(0, 253402300799 * 10**9 + 999_999_999)
"""Every instant up to the end of year 9999."""


class WithNanoseconds(dt.datetime):
    """What google-cloud-spanner returns: a datetime that carries its nanoseconds."""

    nanosecond: int


def spanner_timestamp(version: int) -> dt.datetime:
    seconds, nanos = divmod(version, 10**9)
    base = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    value = WithNanoseconds(base.year, base.month, base.day, base.hour, base.minute,
                            base.second, nanos // 1000, tzinfo=dt.UTC)
    value.nanosecond = nanos
    return value


@given(NANOS)
def test_a_spanner_timestamp_keeps_its_nanoseconds(version: int) -> None:
    """A timestamp with nanoseconds converts to exactly that many nanoseconds."""
    assert versions.from_datetime(spanner_timestamp(version)) == version


OFFSETS = st.builds(lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)),
                    st.integers(-1439, 1439))


@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                    timezones=st.one_of(st.just(dt.UTC), OFFSETS)))
def test_a_plain_datetime_counts_its_microseconds(value: dt.datetime) -> None:
    """A datetime without nanoseconds converts through its microseconds, in any time zone and
    before the epoch too."""
    expected = (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    assert versions.from_datetime(value) == expected * 1000


def test_whole_second_with_zero_nanoseconds_is_exact() -> None:
    """Zero nanoseconds on a Spanner timestamp falls back to the (zero) microseconds."""
    value = spanner_timestamp(1_700_000_000 * 10**9)
    assert versions.from_datetime(value) == 1_700_000_000 * 10**9


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^timestamp must be timezone-aware$"):
        versions.from_datetime(dt.datetime(2026, 1, 1))


@given(NANOS)
def test_rfc3339_round_trips_through_nanoseconds(version: int) -> None:
    """The RFC 3339 text of a version parses back to the same version, and always shows
    nine fractional digits."""
    text = versions.to_rfc3339(version)
    assert versions.parse_rfc3339(text) == version
    assert len(text.rsplit(".", 1)[1]) == len("123456789Z")


@pytest.mark.parametrize(("text", "nanos"), [
    ("2026-01-02T03:04:05Z", 0),
    ("2026-01-02T03:04:05.5Z", 500_000_000),
    ("2026-01-02T03:04:05.000000007Z", 7),
    ("2026-01-02T03:04:05.12Z", 120_000_000),
])
def test_short_fractions_are_tenths_not_units(text: str, nanos: int) -> None:
    """A fraction is padded on the right: ``.5`` is half a second."""
    whole = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    seconds = int((whole - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds())
    assert versions.parse_rfc3339(text) == seconds * 10**9 + nanos


@given(st.text(max_size=120) | st.text(min_size=41, max_size=120))
def test_anything_else_is_refused_naming_at_most_forty_characters(text: str) -> None:
    """Text that is not RFC 3339 UTC is refused, quoting no more than its first 40
    characters."""
    try:
        versions.parse_rfc3339(text)
    except ValueError as e:
        assert str(e) == f"not an RFC 3339 UTC timestamp: {text[:40]!r}"


@pytest.mark.parametrize("text", ["2026-01-02 03:04:05Z", "2026-01-02T03:04:05+00:00",
                                  "2026-01-02T03:04:05.1234567890Z", "x" * 100])
def test_near_misses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an RFC 3339 UTC timestamp"):
        versions.parse_rfc3339(text)


@pytest.mark.parametrize("text", ["2026-02-30T00:00:00Z", "2026-13-01T00:00:00.5Z",
                                  "2026-01-01T24:00:00Z", "2026-01-01T00:00:60Z"])
def test_a_date_or_time_that_does_not_exist_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        versions.parse_rfc3339(text)


def test_stamps_of_one_second_differ_by_their_fractions_only() -> None:
    """Stamps sharing their whole second (computed once for them) keep their own fractions."""
    whole = versions.parse_rfc3339("2026-12-01T18:00:20Z")
    assert versions.parse_rfc3339("2026-12-01T18:00:20.5Z") == whole + 500_000_000
    assert versions.parse_rfc3339("2026-12-01T18:00:20.000000001Z") == whole + 1
    assert versions.parse_rfc3339("2026-12-01T18:00:21Z") == whole + 1_000_000_000


@given(st.integers(0, 10**20 - 1), st.integers(0, 10**20 - 1))
def test_fixed_width_text_orders_like_the_numbers(a: int, b: int) -> None:
    """The Lua guard compares versions as strings: their encoded order is the numbers'."""
    ea, eb = versions.encode(a), versions.encode(b)
    assert len(ea) == len(eb) == versions.VERSION_WIDTH == 20
    assert (ea < eb) == (a < b) and (ea == eb) == (a == b)
    assert int(ea) == a


def test_negative_versions_are_refused_and_zero_is_not() -> None:
    assert versions.encode(0) == "0" * 20
    with pytest.raises(ValueError, match=r"^version must be non-negative$"):
        versions.encode(-1)


def test_seconds_of_a_version() -> None:
    assert versions.to_seconds(1_500_000_000) == 1.5
