"""The producer's outbox row: validated and sized before commit, never after."""

from __future__ import annotations

import json

import pytest
from redis_spanner.producers.outbox import OUTBOX_COLUMNS, OUTBOX_SHARDS, outbox_values, shard_of
from redis_spanner.schemas.errors import (
    EventTooLarge,
    KeyRefused,
    UnknownEventType,
    ValidationError,
)
from redis_spanner.schemas.events import MAX_MESSAGE_BYTES, EventType


def test_row_carries_a_fresh_event_id_a_spread_shard_and_a_pending_commit_timestamp() -> None:
    """Each row mints its own id; the shard comes from the id, never from time."""
    rows = [dict(zip(OUTBOX_COLUMNS, outbox_values(EventType.ROW_CHANGED, "Accounts", ("a",)),
                     strict=True)) for _ in range(200)]
    assert len({r["EventId"] for r in rows}) == 200
    assert {r["Shard"] for r in rows} == set(range(OUTBOX_SHARDS))
    assert all(r["Shard"] == shard_of(r["EventId"]) for r in rows)
    assert json.loads(rows[0]["KeyJson"]) == ["a"]


def test_event_over_the_pubsub_limit_is_refused_at_the_producer() -> None:
    """A payload that would make the message exceed 10 MB raises EventTooLarge before commit."""
    big = {"blob": "x" * MAX_MESSAGE_BYTES}
    with pytest.raises(EventTooLarge, match="Pub/Sub takes at most"):
        outbox_values(EventType.ROW_CHANGED, "Accounts", ("a",), big)
    outbox_values(EventType.ROW_CHANGED, "Accounts", ("a",), {"blob": "x" * 1_000_000})


def test_contract_breaks_are_refused_before_commit() -> None:
    """An unknown type, a bad table or a bad key never reaches the outbox."""
    with pytest.raises(UnknownEventType):
        outbox_values("row.exploded", "Accounts", ("a",))
    with pytest.raises(ValidationError):
        outbox_values(EventType.ROW_CHANGED, "Accounts; DROP", ("a",))
    with pytest.raises((ValidationError, KeyRefused)):
        outbox_values(EventType.ROW_CHANGED, "Accounts", ())
