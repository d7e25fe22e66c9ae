"""The JSON form of a cached value, per Spanner type. Readers in any language rely on it.

A row is an object of its columns; a derived value is an array of row objects. Each value:

    NULL              null
    STRING            string
    INT64             number (integer; readers in JavaScript need a 64-bit-safe parser)
    FLOAT64, FLOAT32  number; NaN, +inf and -inf as the strings "NaN", "Infinity", "-Infinity"
    NUMERIC           string, plain decimal notation ("-12.5", "0.000000001"), never exponent
    BOOL              true / false
    BYTES             string, standard base64 with padding
    DATE              string "YYYY-MM-DD"
    TIMESTAMP         string, RFC 3339 UTC with nine fractional digits
    JSON              the JSON value itself (object, array, string, number, boolean or null)
    UUID              string, lowercase hyphenated
    ARRAY<T>          array of T's form, null for a NULL element

The Spanner adapter hands JSON columns over as plain JSON trees. Any other type (INTERVAL,
PROTO, ENUM...) raises ``UncacheableValue``.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

from redis_spanner.schemas import versions
from redis_spanner.schemas.errors import UncacheableValue

_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False)
_AS_IS = frozenset({str, int, bool, type(None)})
"""Types whose value is its own JSON form (checked by exact type: a subclass of one, like an
enum, goes through ``_plain``)."""


def encode(value: Any) -> str:
    """The cached JSON text of a value read from Spanner. Raises ``UncacheableValue``."""
    return _ENCODER.encode(_plain(value))


def _plain(value: Any) -> Any:
    if type(value) in _AS_IS:
        return value
    if type(value) is dict and all(type(k) is str for k in value):  # a row: mostly scalars
        return {k: v if type(v) in _AS_IS else _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise UncacheableValue(f"NUMERIC {value} has no cached form")
        return format(value, "f")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return versions.to_rfc3339(versions.from_datetime(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise UncacheableValue(f"a value of type {type(value).__name__} has no cached form")
