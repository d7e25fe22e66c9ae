"""The one event envelope that travels from the outbox to the consumers.

The wire form is UTF-8 JSON. The producer mints ``event_id`` once; nothing downstream replaces
it, so a duplicate or a replayed event is recognisable everywhere. ``version`` is the commit
timestamp of the producing transaction, in nanoseconds (see ``redis_spanner.schemas.versions``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis_spanner.schemas import versions
from redis_spanner.schemas.errors import (
    DecodeError,
    UnknownEventType,
    UnsupportedSchemaVersion,
    ValidationError,
    VersionAhead,
)
from redis_spanner.schemas.events import (
    MAX_KEY_PART_LENGTH,
    MAX_KEY_PARTS,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    EventType,
)

KeyPart = str | int
_EVENT_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
EVENT_ID_PATTERN = _EVENT_ID.pattern
TABLE_PATTERN = _IDENTIFIER.pattern
_REQUIRED = ("event_id", "type", "table", "key", "commit_ts")
_REQUIRED_SET = frozenset(_REQUIRED)
_FIELDS = frozenset({"schema_version", *_REQUIRED, "payload"})
_EVENT_TYPES = {str(t): t for t in EventType}
_STRICT = msgspec.json.Decoder().decode
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    type: EventType
    table: str
    key: tuple[KeyPart, ...]
    version: int
    payload: Mapping[str, Any] | None = field(default=None, compare=False)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def commit_ts(self) -> str:
        return versions.to_rfc3339(self.version)

    def encode(self) -> bytes:
        return encode_fields(
            self.event_id, str(self.type), self.table, list(self.key), self.commit_ts,
            None if self.payload is None else dict(self.payload), self.schema_version,
        )

    def attributes(self) -> dict[str, str]:
        return attributes_of(
            self.event_id, str(self.type), self.table, self.commit_ts, self.schema_version
        )


def encode_fields(
    event_id: str,
    event_type: str,
    table: str,
    key: Any,
    commit_ts: str,
    payload: Any,
    schema_version: int,
) -> bytes:
    """The wire form, without validation (``Event`` validates before it encodes; the relay
    builds an ``Event`` from each outbox row and quarantines a row that cannot be one)."""
    body: dict[str, Any] = {
        "schema_version": schema_version,
        "event_id": event_id,
        "type": event_type,
        "table": table,
        "key": key,
        "commit_ts": commit_ts,
    }
    if payload is not None:
        body["payload"] = payload
    return _ENCODER.encode(body).encode()


def attributes_of(
    event_id: str, event_type: str, table: str, commit_ts: str, schema_version: int
) -> dict[str, str]:
    """Pub/Sub attributes: enough to filter and triage without decoding the body."""
    return {
        "event_id": event_id[:256],
        "event_type": event_type[:256],
        "table": table[:256],
        "schema_version": str(schema_version),
        "commit_ts": commit_ts,
    }


def parse_json(text: bytes | str) -> Any:
    """The JSON value of ``text`` exactly as ``json.loads`` reads it, in a fraction of its time:
    msgspec reads standard JSON, and what only ``json`` takes (``NaN``, ``Infinity``, a lone
    surrogate escape, which Python writers can produce) is read by ``json``. Raises
    ``ValueError`` (``UnicodeDecodeError`` and ``json.JSONDecodeError`` among them) or
    ``RecursionError``."""
    try:
        return _STRICT(text)
    except (msgspec.MsgspecError, UnicodeEncodeError):  # the latter: a str holding a surrogate
        return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)


def type_named(name: object) -> EventType | None:
    """The event type of that name, or None for anything else (any value at all)."""
    return _EVENT_TYPES.get(name) if isinstance(name, str) else None


def decode(
    raw: bytes,
    *,
    max_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS,
    now_ns: int | None = None,
) -> Event:
    """Parse and validate a wire message. Every failure is a ``PermanentError``; a commit
    timestamp more than ``max_skew_seconds`` ahead of this clock is ``VersionAhead``."""
    try:
        body = parse_json(raw)
    except (ValueError, RecursionError) as e:
        raise DecodeError(f"not a JSON envelope: {e}", raw) from e
    if type(body) is not dict:
        raise DecodeError("envelope must be a JSON object", raw)
    schema_version = body.get("schema_version")
    if type(schema_version) is not int:
        raise ValidationError("schema_version must be an integer")
    if schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnsupportedSchemaVersion(f"schema_version {schema_version} is not supported")
    if not body.keys() >= _REQUIRED_SET:
        missing = [k for k in _REQUIRED if k not in body]
        raise ValidationError(f"missing field(s): {', '.join(missing)}")
    if not _FIELDS.issuperset(body):
        unknown = set(body) - _FIELDS
        raise ValidationError(f"unknown field(s): {', '.join(sorted(unknown))}")
    event_type = type_named(body["type"])
    if event_type is None:
        raise UnknownEventType(f"unknown event type {str(body['type'])[:64]!r}")
    if not isinstance(body["commit_ts"], str):
        raise ValidationError("commit_ts must be an RFC 3339 string")
    try:
        version = versions.parse_rfc3339(body["commit_ts"])
    except ValueError as e:
        raise ValidationError(str(e)) from e
    if version > versions.ceiling(max_skew_seconds, now_ns):
        raise VersionAhead(
            f"commit_ts {body['commit_ts']} is more than {max_skew_seconds:g} s ahead of this "
            "clock (REDIS_SPANNER_MAX_VERSION_SKEW_SECONDS)"
        )
    key = body["key"]
    if type(key) is not list:
        raise ValidationError("key must be a list of primary key parts")
    payload = body.get("payload")
    if payload is not None and type(payload) is not dict:
        raise ValidationError("payload must be an object when present")
    # Event checks the rest: event_id, table and the key's parts.
    return Event(body["event_id"], event_type, body["table"], tuple(key), version, payload,
                 schema_version)


def _validate(event: Event) -> None:
    if not isinstance(event.event_id, str) or not _EVENT_ID.fullmatch(event.event_id):
        raise ValidationError("event_id must be 8-64 characters of [A-Za-z0-9-]")
    if not isinstance(event.type, EventType):
        raise UnknownEventType(f"unknown event type {event.type!r}")
    if not isinstance(event.table, str) or not _table_ok(event.table):
        raise ValidationError("table must be a Spanner identifier")
    if not event.key or len(event.key) > MAX_KEY_PARTS:
        raise ValidationError(f"key must have 1 to {MAX_KEY_PARTS} parts")
    for part in event.key:
        if type(part) is int:
            continue
        if not isinstance(part, str) or not part or len(part) > MAX_KEY_PART_LENGTH:
            raise ValidationError(
                f"key parts must be integers or strings of 1-{MAX_KEY_PART_LENGTH} characters"
            )
    if type(event.version) is not int or event.version <= 0:
        raise ValidationError("version must be a positive integer of nanoseconds")


@functools.lru_cache(maxsize=256)
def _table_ok(table: str) -> bool:
    """Whether ``table`` is a Spanner identifier: a handful of tables carry every event."""
    return _IDENTIFIER.fullmatch(table) is not None
