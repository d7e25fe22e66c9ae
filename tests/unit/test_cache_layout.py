"""The layout of an entry in Redis and how Spanner values become its JSON."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from redis_spanner.schemas.cache import (
    OP_INVALIDATE,
    OP_SET,
    CacheOp,
    Entry,
    encode_value,
    parse_entry,
)
from redis_spanner.schemas.errors import UncacheableValue


def test_spanner_values_encode_as_stable_json() -> None:
    """Timestamps in RFC 3339 with nanoseconds, dates in ISO form, bytes in base64,
    numerics as exact strings; keys sorted and no spaces, so equal rows give equal text."""
    value = {"b": b"\x00\xff", "a": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
             "d": dt.date(2026, 1, 2), "n": decimal.Decimal("1.10"), "l": [1, None]}
    assert encode_value(value) == (
        '{"a":"2026-01-02T03:04:05.000006000Z","b":"AP8=","d":"2026-01-02",'
        '"l":[1,null],"n":"1.10"}')


def test_a_value_that_cannot_be_cached_is_refused_by_type() -> None:
    """A value of a type with no cached form is a permanent error naming the type."""
    with pytest.raises(UncacheableValue, match="a value of type object has no cached form"):
        encode_value({"x": object()})


def test_entries_parse_from_their_hash_fields() -> None:
    """A value, a tombstone, and anything without a version (nothing, or foreign fields)."""
    assert parse_entry({"v": "00000000000000000042", "s": "v", "d": "[1]"}) == Entry(
        42, False, "[1]")
    assert parse_entry({"v": "00000000000000000043", "s": "t"}) == Entry(43, True, None)
    assert parse_entry({}) is None
    assert parse_entry({"type": "string"}) is None
    assert Entry(1, False, '{"a":1}').value() == {"a": 1}
    assert Entry(1, True, None).value() is None


def test_ops_say_what_they_write() -> None:
    assert CacheOp.invalidate("k", 5) == CacheOp("k", OP_INVALIDATE, 5, None)
    assert CacheOp.set("k", 5, {"a": 1}) == CacheOp("k", OP_SET, 5, '{"a":1}')
