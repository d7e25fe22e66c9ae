"""Record cache events in the transactional outbox, inside the caller's read-write transaction.

    def transfer(tx):
        tx.update("Accounts", ["AccountId", "Balance"], [["a-1", 90]])
        record(tx, EventType.ROW_CHANGED, "Accounts", ("a-1",))

    run_transaction(database, transfer)

The outbox row commits with the business write or not at all. Its version is the transaction's
commit timestamp (``PENDING_COMMIT_TIMESTAMP``). The event id is minted here, once. The
row's ``TraceParent`` is the W3C traceparent of the caller's current span (NULL when no
OpenTelemetry SDK is configured), so the consumer's work on the event joins the writer's trace.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from google.cloud import spanner
from redis_spanner.schemas.envelope import Event, KeyPart
from redis_spanner.schemas.errors import EventTooLarge, UnknownEventType
from redis_spanner.schemas.events import MAX_MESSAGE_BYTES, SCHEMA_VERSION, EventType
from redis_spanner.schemas.tracing import current_traceparent

OUTBOX_TABLE = "Outbox"
OUTBOX_SHARDS = 16
"""Matches the CHECK constraint of the Outbox table in infra/spanner/schema.sql."""

OUTBOX_COLUMNS = (
    "Shard",
    "EventId",
    "EventType",
    "TableName",
    "KeyJson",
    "Payload",
    "SchemaVersion",
    "CommitTs",
    "TraceParent",
)
# A version placeholder as wide as any real one, to size the wire form before commit.
_SIZING_VERSION = 9_999_999_999_999_999_999 // 10


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event ``record`` buffered, as the fast path needs it once the commit returns."""

    event_id: str
    event_type: EventType
    table: str
    key: tuple[KeyPart, ...]


_RECORDING: ContextVar[list[Recorded] | None] = ContextVar("redis_spanner_recording",
                                                           default=None)


@contextmanager
def recording() -> Iterator[list[Recorded]]:
    """Collect the events ``record`` buffers in this context (this thread's transaction
    attempt), for the fast path."""
    events: list[Recorded] = []
    token = _RECORDING.set(events)
    try:
        yield events
    finally:
        _RECORDING.reset(token)


def new_event_id() -> str:
    return str(uuid.uuid4())


def shard_of(event_id: str) -> int:
    """Any shard works; hashing the random id spreads writers evenly and is reproducible."""
    return uuid.UUID(event_id).int % OUTBOX_SHARDS


def outbox_values(
    event_type: EventType | str,
    table: str,
    key: Sequence[KeyPart],
    payload: Mapping[str, Any] | None = None,
    *,
    event_id: str | None = None,
    traceparent: str | None = None,
) -> list[Any]:
    """Validate one event and return its Outbox row (commit timestamp still pending), with
    ``traceparent``, or else the current span's."""
    event_id = event_id or new_event_id()
    try:
        kind = EventType(event_type)
    except ValueError:
        raise UnknownEventType(f"unknown event type {str(event_type)[:64]!r}") from None
    event = Event(
        event_id=event_id,
        type=kind,
        table=table,
        key=tuple(key),
        version=_SIZING_VERSION,
        payload=payload,
    )
    traceparent = traceparent or current_traceparent()
    size = len(event.encode()) + sum(len(k) + len(v) for k, v in event.attributes().items())
    size += 0 if traceparent is None else len("traceparent") + len(traceparent)
    if size > MAX_MESSAGE_BYTES:
        raise EventTooLarge(
            f"event for {table} is {size} bytes; Pub/Sub takes at most {MAX_MESSAGE_BYTES}"
        )
    return [
        shard_of(event_id),
        event_id,
        str(event.type),
        table,
        json.dumps(list(event.key), separators=(",", ":")),
        None if payload is None else json.dumps(dict(payload), separators=(",", ":")),
        SCHEMA_VERSION,
        spanner.COMMIT_TIMESTAMP,
        traceparent,
    ]


def record(
    transaction: Any,
    event_type: EventType | str,
    table: str,
    key: Sequence[KeyPart],
    payload: Mapping[str, Any] | None = None,
) -> str:
    """Buffer one outbox row in ``transaction``; returns the event id."""
    values = outbox_values(event_type, table, key, payload)
    transaction.insert(OUTBOX_TABLE, columns=OUTBOX_COLUMNS, values=[values])
    event_id = str(values[1])
    events = _RECORDING.get()
    if events is not None:
        events.append(Recorded(event_id, EventType(event_type), table, tuple(key)))
    return event_id
