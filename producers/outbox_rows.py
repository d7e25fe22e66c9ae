"""Outbox rows as the relay reads them: each one becomes a message or a poison row.

Writers in any language insert outbox rows with plain SQL, so a row may be anything the table
accepts. ``to_message`` builds the one validated ``Event`` from a row, exactly as a consumer
would decode it; a row that cannot become a valid message within Pub/Sub's size limit is
poison, with the reason why, and the relay moves it aside instead of publishing it.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis_spanner.schemas import tracing, versions
from redis_spanner.schemas.envelope import (
    Event,
    attributes_of,
    encode_fields,
    parse_json,
    type_named,
)
from redis_spanner.schemas.errors import (
    DecodeError,
    EventTooLarge,
    PermanentError,
    UnknownEventType,
    UnsupportedSchemaVersion,
    ValidationError,
)
from redis_spanner.schemas.events import MAX_MESSAGE_BYTES, SUPPORTED_SCHEMA_VERSIONS

COLUMNS = ("Shard", "EventId", "EventType", "TableName", "KeyJson", "Payload", "SchemaVersion",
           "CommitTs", "TraceParent")
_REQUIRED = frozenset(COLUMNS) - {"Payload", "TraceParent"}
_required = operator.itemgetter(*(i for i, name in enumerate(COLUMNS) if name in _REQUIRED))
"""The values of the columns a row must fill."""
REASON_CHARS = 1000
"""Reasons are cut to this length (the quarantine column holds 1024)."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A row that is a valid message: its wire form and attributes, ready to publish."""

    shard: int
    event_id: str
    data: bytes
    attributes: dict[str, str]
    commit_ts: dt.datetime


@dataclass(frozen=True, slots=True)
class PoisonRow:
    """A row that can never become a message, and why."""

    shard: int
    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Pending:
    """One read of pending rows: those to publish, and those to move aside."""

    rows: list[OutboxRow]
    poison: list[PoisonRow]
    last: Position | None = None
    """Where the read stopped: the next read may start after it (None: start over)."""
    full: bool = False
    """The read returned as many rows as it was allowed: more may be waiting."""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the relay's reading order, the outbox's key order: shard, then event id."""

    shard: int
    event_id: str


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    """A row in OutboxQuarantine, as ``redis-spanner outbox quarantine`` shows it."""

    shard: int
    event_id: str
    event_type: str | None
    table: str | None
    schema_version: int | None
    commit_ts: dt.datetime | None
    reason: str
    quarantined_at: dt.datetime
    key_head: str | None
    """The first 200 characters of KeyJson."""
    key_chars: int | None
    payload_chars: int | None

    @classmethod
    def of(cls, values: Sequence[Any]) -> QuarantinedRow:
        return cls(*values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "shard": self.shard, "event_id": self.event_id, "event_type": self.event_type,
            "table": self.table, "schema_version": self.schema_version,
            "commit_ts": _iso(self.commit_ts), "reason": self.reason,
            "quarantined_at": _iso(self.quarantined_at), "key_head": self.key_head,
            "key_chars": self.key_chars, "payload_chars": self.payload_chars,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def classify(values: Sequence[Any]) -> OutboxRow | PoisonRow:
    """The message for one row read as ``COLUMNS``, or the poison row naming what is wrong.

    Any failure to build the message makes the row poison, whatever raised it: one row must
    never stop the rows around it."""
    shard, event_id = values[0], values[1]
    try:
        return to_message(values)
    except PermanentError as e:
        reason = f"{e.reason}: {e}"
    except RecursionError:
        reason = "undecodable: nested too deeply"
    except Exception as e:  # whatever a row holds, it is moved aside, not fatal
        reason = f"undecodable: {type(e).__name__}: {e}"
    return PoisonRow(shard, event_id, reason[:REASON_CHARS])


def to_message(values: Sequence[Any]) -> OutboxRow:
    """Build and validate the message of one row; raises a ``PermanentError`` if it is not one."""
    if len(values) != len(COLUMNS):
        raise ValueError(f"a row of {len(COLUMNS)} columns expected, got {len(values)}")
    (shard, event_id, event_type, table, key_json, payload_json, schema_version, commit_time,
     traceparent) = values
    if None in _required(values):
        missing = sorted(name for name, value in zip(COLUMNS, values, strict=True)
                         if value is None and name in _REQUIRED)
        raise ValidationError(f"NULL in required column(s) {', '.join(missing)}")
    if schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnsupportedSchemaVersion(f"SchemaVersion {schema_version} is not supported")
    kind = type_named(event_type)
    if kind is None:
        raise UnknownEventType(f"unknown event type {str(event_type)[:64]!r}")
    key = _json("KeyJson", key_json)
    if not isinstance(key, list):
        raise ValidationError("KeyJson must be a JSON array of primary key parts")
    payload = None if payload_json is None else _json("Payload", payload_json)
    if payload is not None and not isinstance(payload, dict):
        raise ValidationError("Payload must be a JSON object or NULL")
    event = Event(event_id, kind, table, tuple(key), versions.from_datetime(commit_time),
                  payload, schema_version)
    commit_ts = versions.to_rfc3339(event.version)
    # Validated: the type is one of EventType's values, as the row spelled it.
    data = encode_fields(event_id, event_type, table, key, commit_ts, payload, schema_version)
    attributes = attributes_of(event_id, event_type, table, commit_ts, schema_version)
    if tracing.parse(traceparent) is not None:  # a malformed one is dropped, not fatal
        attributes[tracing.ATTRIBUTE] = traceparent
    size = (len(data) + len("".join(attributes).encode())
            + len("".join(attributes.values()).encode()))
    if size > MAX_MESSAGE_BYTES:
        raise EventTooLarge(f"wire form is {size} bytes; Pub/Sub takes at most "
                            f"{MAX_MESSAGE_BYTES}")
    return OutboxRow(shard, event_id, data, attributes, commit_time)


def _json(column: str, text: str) -> Any:
    try:
        return parse_json(text)
    except RecursionError:
        raise DecodeError(f"{column} is nested too deeply") from None
    except ValueError as e:
        raise DecodeError(f"{column} is not JSON: {e}") from None
