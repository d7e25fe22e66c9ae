"""The push endpoint reads Pub/Sub's push envelope and refuses anything else."""

from __future__ import annotations

import base64
import json

import pytest
from redis_spanner.consumers.push import PushFormatError, parse_push


def test_push_envelope_becomes_an_inbound_message() -> None:
    """Data is base64-decoded; id, attributes, delivery attempt and publish time are kept."""
    body = json.dumps({
        "message": {"data": base64.b64encode(b'{"x":1}').decode(), "messageId": "42",
                    "attributes": {"event_id": "e"}, "publishTime": "2026-11-26T03:00:00.5Z"},
        "subscription": "projects/p/subscriptions/s",
        "deliveryAttempt": 3,
    }).encode()
    message = parse_push(body)
    assert message.data == b'{"x":1}' and message.message_id == "42"
    assert message.attributes == {"event_id": "e"} and message.delivery_attempt == 3
    assert message.publish_time is not None and message.publish_time % 1 == 0.5


@pytest.mark.parametrize("body", [b"", b"[]", b'{"message": 1}', b'{"message": {"data": "%%%"}}',
                                  b'{"message": {"data": "eA=="}}'])
def test_anything_else_is_a_format_error(body: bytes) -> None:
    """Bodies that are not push envelopes (no message, bad base64, no id) are refused."""
    with pytest.raises(PushFormatError):
        parse_push(body)
