"""parse_push has exactly two answers: a message, or PushFormatError (the endpoint's 400)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.consumers.messages import Inbound
from redis_spanner.consumers.push import PushFormatError, parse_push

FIELDS = st.sampled_from(["message", "data", "messageId", "message_id", "attributes",
                          "deliveryAttempt", "publishTime", "subscription"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["eA==", "%%", "2026-12-01T12:00:00Z", "\ud800"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(FIELDS, inner, max_size=6),
    max_leaves=25,
)


@given(st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300),
                 st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n)))
def test_any_body_is_a_message_or_a_format_error(body: bytes) -> None:
    """No body, however shaped, makes parsing raise anything but PushFormatError; what it
    accepts has a string id, string attributes and a non-negative attempt."""
    try:
        message = parse_push(body)
    except PushFormatError:
        return
    assert isinstance(message, Inbound) and isinstance(message.message_id, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in message.attributes.items())
    assert message.delivery_attempt >= 0
