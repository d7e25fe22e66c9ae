"""Does a cached value say what Spanner holds? ``verify``'s comparison, typed value by value.

Written apart from the encoder (``redis_spanner.schemas.values``) on purpose: it decodes the
cached JSON and checks each Spanner value against it with rules of its own, so a value the
encoder gets wrong is caught instead of being compared with the same mistake. The rules follow
the value encoding documented in the README.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{9})Z")
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")
_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def cached_matches(data: str | None, expected: Any) -> bool:
    """Whether the cached JSON text ``data`` is the cached form of ``expected``, a value as
    the Spanner adapter returns it (a row dict, a list of row dicts, ``None`` for no row)."""
    if data is None:
        return False
    try:
        cached = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return same(cached, expected)


def same(cached: Any, expected: Any) -> bool:
    """Whether the decoded JSON ``cached`` stands for the Spanner value ``expected``."""
    if expected is None:
        return cached is None
    if isinstance(expected, bool):
        return cached is expected
    if isinstance(expected, int):
        return type(cached) is int and cached == expected
    if isinstance(expected, float):
        return _same_float(cached, expected)
    if isinstance(expected, decimal.Decimal):
        return (isinstance(cached, str) and _DECIMAL.fullmatch(cached) is not None
                and decimal.Decimal(cached) == expected)
    if isinstance(expected, str):
        return isinstance(cached, str) and cached == expected
    if isinstance(expected, bytes):
        return isinstance(cached, str) and _unbase64(cached) == expected
    if isinstance(expected, dt.datetime):
        return isinstance(cached, str) and _same_instant(cached, expected)
    if isinstance(expected, dt.date):
        return isinstance(cached, str) and _same_date(cached, expected)
    if isinstance(expected, uuid.UUID):
        return isinstance(cached, str) and cached == str(expected)
    if isinstance(expected, (list, tuple)):
        return (isinstance(cached, list) and len(cached) == len(expected)
                and all(same(c, e) for c, e in zip(cached, expected, strict=True)))
    if isinstance(expected, Mapping):
        return (isinstance(cached, dict) and cached.keys() == expected.keys()
                and all(same(cached[k], v) for k, v in expected.items()))
    return False


def _same_float(cached: Any, expected: float) -> bool:
    if isinstance(cached, str):
        word = _FLOAT_WORDS.get(cached)
        if word is None or not (math.isnan(expected) or math.isinf(expected)):
            return False
        return math.isnan(word) if math.isnan(expected) else word == expected
    if isinstance(cached, bool) or not isinstance(cached, (int, float)):
        return False
    return (math.isfinite(expected) and float(cached) == expected
            and math.copysign(1.0, cached) == math.copysign(1.0, expected))


def _unbase64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _same_instant(text: str, expected: dt.datetime) -> bool:
    match = _TIMESTAMP.fullmatch(text)
    if match is None or expected.tzinfo is None:
        return False
    *whole, fraction = (int(part) for part in match.groups())
    utc = expected.astimezone(dt.UTC)
    nanos = getattr(expected, "nanosecond", 0) or expected.microsecond * 1000
    return (tuple(whole) == (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
            and fraction == nanos)


def _same_date(text: str, expected: dt.date) -> bool:
    try:
        return len(text) == 10 and dt.date.fromisoformat(text) == expected
    except ValueError:
        return False
