"""The cached JSON form of every Spanner type, and verify's own check of it.

The expected texts are written out by hand from the README's encoding table, so neither the
encoder nor the checker is tested against itself."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from typing import Any

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.consumers.value_check import cached_matches, same
from redis_spanner.schemas.errors import UncacheableValue
from redis_spanner.schemas.values import encode

NANOS = DatetimeWithNanoseconds(2026, 3, 4, 5, 6, 7, nanosecond=123456789, tzinfo=dt.UTC)

EXPECTED: list[tuple[str, Any, str]] = [
    ("NULL", None, "null"),
    ("STRING", "héllo \"q\"", '"h\\u00e9llo \\"q\\""'),
    ("INT64", -(2**63), "-9223372036854775808"),
    ("FLOAT64", 0.1, "0.1"),
    ("FLOAT64 -0", -0.0, "-0.0"),
    ("FLOAT64 NaN", math.nan, '"NaN"'),
    ("FLOAT64 +inf", math.inf, '"Infinity"'),
    ("FLOAT64 -inf", -math.inf, '"-Infinity"'),
    ("NUMERIC", decimal.Decimal("-12.500000000"), '"-12.500000000"'),
    ("NUMERIC tiny", decimal.Decimal("1E-9"), '"0.000000001"'),
    ("NUMERIC big", decimal.Decimal("9.9999999999999999999999999999999999999E+28"),
     '"99999999999999999999999999999.999999999"'),
    ("BOOL", True, "true"),
    ("BYTES", b"\x00\xff\xfe", '"AP/+"'),
    ("DATE", dt.date(1, 1, 1), '"0001-01-01"'),
    ("TIMESTAMP", NANOS, '"2026-03-04T05:06:07.123456789Z"'),
    ("TIMESTAMP early", dt.datetime(5, 6, 7, 8, 9, 10, 11, tzinfo=dt.UTC),
     '"0005-06-07T08:09:10.000011000Z"'),
    ("JSON object", {"b": [1, {"c": None}], "a": "x"}, '{"a":"x","b":[1,{"c":null}]}'),
    ("JSON array", [1, "two", [3]], '[1,"two",[3]]'),
    ("JSON scalar", "just text", '"just text"'),
    ("UUID", uuid.UUID(int=1), '"00000000-0000-0000-0000-000000000001"'),
    ("ARRAY<FLOAT64>", [1.5, None, math.nan], '[1.5,null,"NaN"]'),
    ("ARRAY<BYTES>", [b"a", None], '["YQ==",null]'),
    ("row", {"Id": 1, "At": NANOS, "Blob": b"z"},
     '{"At":"2026-03-04T05:06:07.123456789Z","Blob":"eg==","Id":1}'),
]


@pytest.mark.parametrize(("name", "value", "text"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_each_type_has_its_documented_form(name: str, value: Any, text: str) -> None:
    """The encoder writes the README's form, which is standard JSON (no NaN literal), and
    verify's checker accepts exactly that form."""
    assert encode(value) == text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert cached_matches(text, value)


WRONG: list[tuple[str, str, Any]] = [
    ("JSON array cached as an empty object", "{}", [1, 2]),
    ("JSON scalar cached as an empty object", "{}", 5),
    ("NaN cached as the JSON literal", "NaN", math.nan),
    ("NaN where Spanner holds infinity", '"NaN"', math.inf),
    ("the string 'NaN' where Spanner holds a STRING with other text", '"NaN"', "nan"),
    ("an integer where Spanner holds a bool", "1", True),
    ("a bool where Spanner holds an integer", "true", 1),
    ("a float where Spanner holds an INT64", "1.0", 1),
    ("NUMERIC as a JSON number", "1.5", decimal.Decimal("1.5")),
    ("NUMERIC in exponent form", '"1E-9"', decimal.Decimal("1E-9")),
    ("bytes as text", '"abc"', b"abc"),
    ("timestamp cut to microseconds", '"2026-03-04T05:06:07.123456Z"', NANOS),
    ("timestamp off by a nanosecond", '"2026-03-04T05:06:07.123456788Z"', NANOS),
    ("date without zero padding", '"1-01-01"', dt.date(1, 1, 1)),
    ("negative zero lost", "0.0", -0.0),
    ("a row missing a column", '{"a":1}', {"a": 1, "b": None}),
    ("a null where a row exists", "null", {"a": 1}),
    ("not JSON at all", "{", {"a": 1}),
]


@pytest.mark.parametrize(("name", "text", "value"), WRONG, ids=[w[0] for w in WRONG])
def test_checker_refuses_a_wrong_form(name: str, text: str, value: Any) -> None:
    """Forms the encoder must never write (some of which it did) are judged stale."""
    assert not cached_matches(text, value)


def test_types_without_a_form_are_refused_with_their_name() -> None:
    """A value of a type the encoding does not cover raises ``UncacheableValue``, never a
    TypeError, and the reason names the type."""
    for value in (dt.timedelta(days=1), object(), {"row": {1: "int key"}},
                  decimal.Decimal("NaN")):
        with pytest.raises(UncacheableValue) as refused:
            encode(value)
        assert refused.value.reason == "uncacheable-value"


_timestamps = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31),
                           timezones=st.just(dt.UTC)).flatmap(
    lambda d: st.integers(0, 999).map(
        lambda n: DatetimeWithNanoseconds(d.year, d.month, d.day, d.hour, d.minute, d.second,
                                          nanosecond=d.microsecond * 1000 + n, tzinfo=dt.UTC)))
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)
SCALARS = {
    "STRING": st.text(max_size=20),
    "INT64": st.integers(-(2**63), 2**63 - 1),
    "FLOAT64": st.floats(),
    "NUMERIC": st.decimals(min_value=decimal.Decimal("-1E+29") + 1,
                           max_value=decimal.Decimal("1E+29") - 1, places=9),
    "BOOL": st.booleans(),
    "BYTES": st.binary(max_size=20),
    "DATE": st.dates(),
    "TIMESTAMP": _timestamps,
    "JSON": _json,
}
_values = st.one_of(*SCALARS.values()) | st.lists(
    st.one_of(*(st.lists(s | st.none(), max_size=4) for s in SCALARS.values())), max_size=1
).map(lambda arrays: arrays[0] if arrays else [])


@given(st.dictionaries(st.text(min_size=1, max_size=6), _values | st.none(), max_size=6))
def test_every_encoded_row_is_recognised_by_the_independent_check(row: dict[str, Any]) -> None:
    """For generated rows of every type and array type, what the encoder writes is what the
    checker, which shares no code with it, says Spanner holds."""
    assert same(json.loads(encode(row)), row)


@given(st.sampled_from(sorted(SCALARS)).flatmap(
    lambda t: st.tuples(SCALARS[t], SCALARS[t])))
def test_a_different_value_of_the_same_type_is_judged_stale(pair: tuple[Any, Any]) -> None:
    """The checker tells apart any two values Spanner tells apart."""
    a, b = pair
    if _equal(a, b):
        return
    assert not same(json.loads(encode(a)), b)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a == b and getattr(a, "nanosecond", 0) == getattr(b, "nanosecond", 0)
    return type(a) is type(b) and json.dumps(a, sort_keys=True, default=str) == json.dumps(
        b, sort_keys=True, default=str)
