"""Whatever an outbox row holds, the relay's reading of it is a valid message or poison with a
reason, never an exception."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.producers.outbox_rows import REASON_CHARS, OutboxRow, PoisonRow, classify
from redis_spanner.schemas.envelope import decode
from redis_spanner.schemas.events import MAX_MESSAGE_BYTES

REASONS = ("undecodable:", "invalid:", "unknown-type:", "unsupported-schema-version:",
           "too-large:", "permanent:")
COMMIT = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
json_text = st.one_of(st.text(max_size=40), json_values.map(json.dumps),
                      st.integers(1, 3000).map(lambda n: "[" * n + "]" * n))


def row(**overrides: Any) -> list[Any]:
    values = {"Shard": 3, "EventId": str(uuid.uuid4()), "EventType": "row.changed",
              "TableName": "Accounts", "KeyJson": '["acct-1"]', "Payload": None,
              "SchemaVersion": 1, "CommitTs": COMMIT, "TraceParent": None}
    values.update(overrides)
    return list(values.values())


@given(
    event_type=st.one_of(st.none(), st.sampled_from(["row.changed", "row.deleted", "x"])),
    table=st.one_of(st.none(), st.sampled_from(["Accounts", "1bad", ""])),
    key_json=st.one_of(st.none(), json_text),
    payload=st.one_of(st.none(), json_text),
    schema_version=st.one_of(st.none(), st.integers(-2, 3)),
)
def test_any_row_is_a_decodable_message_or_poison_with_a_reason(
    event_type: str | None, table: str | None, key_json: str | None, payload: str | None,
    schema_version: int | None,
) -> None:
    """A message decodes, as a consumer would, to the row's event id and version; anything
    else is poison whose reason names its class, and nothing raises."""
    values = row(EventType=event_type, TableName=table, KeyJson=key_json, Payload=payload,
                 SchemaVersion=schema_version)
    result = classify(values)
    if isinstance(result, OutboxRow):
        event = decode(result.data)
        assert event.event_id == values[1] and result.attributes["event_id"] == values[1]
        assert event.commit_ts == result.attributes["commit_ts"]
        assert len(result.data) <= MAX_MESSAGE_BYTES
    else:
        assert isinstance(result, PoisonRow) and result.event_id == values[1]
        assert result.reason.startswith(REASONS) and len(result.reason) <= REASON_CHARS


def test_a_wire_form_over_the_pubsub_limit_is_poison_even_when_the_column_fits() -> None:
    """Non-ASCII text is six bytes per character once escaped: a payload well inside Spanner's
    column limit can still be too large to publish."""
    payload = json.dumps({"blob": "\u00e9" * (MAX_MESSAGE_BYTES // 6 + 1)}, ensure_ascii=False)
    result = classify(row(Payload=payload))
    assert isinstance(result, PoisonRow) and result.reason.startswith("too-large:")
    fits = classify(row(Payload=json.dumps({"blob": "\u00e9" * 1000}, ensure_ascii=False)))
    assert isinstance(fits, OutboxRow)
