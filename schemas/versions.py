"""Versions are Spanner timestamps in integer nanoseconds since the epoch.

In Redis a version is stored as a fixed-width decimal string so the Lua guard can compare
versions as strings: Lua numbers are doubles and would lose the low digits of a nanosecond
timestamp.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time

VERSION_WIDTH = 20
DEFAULT_MAX_SKEW_SECONDS = 3600.0
"""How far ahead of this machine's clock a version may be: Spanner's commit timestamps trail
real time, so a version further ahead was forged or written by a clock gone wrong."""
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$", re.ASCII
)
RFC3339_PATTERN = _RFC3339.pattern
_WHOLE_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", re.ASCII)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def from_datetime(value: dt.datetime) -> int:
    """Nanoseconds since the epoch; keeps the nanoseconds of DatetimeWithNanoseconds."""
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    since = value - _EPOCH
    seconds = since.days * 86_400 + since.seconds
    nanos = getattr(value, "nanosecond", None)
    if not nanos:
        nanos = value.microsecond * 1000
    return seconds * 1_000_000_000 + nanos


def to_rfc3339(version: int) -> str:
    seconds, nanos = divmod(version, 1_000_000_000)
    return f"{_stamp(seconds)}.{nanos:09d}Z"


@functools.lru_cache(maxsize=1024)
def _stamp(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a second since the epoch, computed once for every version
    within it."""
    t = _EPOCH + dt.timedelta(seconds=seconds)  # strftime drops the zeros of years < 1000
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def parse_rfc3339(text: str) -> int:
    if (len(text) == 30 and text[19] == "." and text[29] == "Z" and text.isascii()
            and text[20:29].isdigit()):
        # The form Spanner and this project write: nanoseconds, all nine digits.
        return _whole_seconds(text[:19]) * 1_000_000_000 + int(text[20:29])
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text[:40]!r}")
    frac = match.group(7)
    return _whole_seconds(text[:19]) * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


@functools.lru_cache(maxsize=1024)
def _whole_seconds(stamp: str) -> int:
    """Seconds since the epoch of ``YYYY-MM-DDTHH:MM:SS``: the events of one batch mostly
    share their second, so this is computed once for them. Anything else, or a date that does
    not exist, raises ``ValueError``."""
    if _WHOLE_SECONDS.fullmatch(stamp) is None:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {stamp!r}")
    whole = dt.datetime(int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]), int(stamp[11:13]),
                        int(stamp[14:16]), int(stamp[17:19]), tzinfo=dt.UTC)
    return int((whole - _EPOCH).total_seconds())


def encode(version: int) -> str:
    """The fixed-width form stored in Redis."""
    if version < 0:
        raise ValueError("version must be non-negative")
    return f"{version:0{VERSION_WIDTH}d}"


def to_seconds(version: int) -> float:
    return version / 1_000_000_000


def ceiling(max_skew_seconds: float, now_ns: int | None = None) -> int:
    """The newest version accepted now: this clock plus the allowed skew."""
    now = time.time_ns() if now_ns is None else now_ns
    return now + int(max_skew_seconds * 1_000_000_000)
