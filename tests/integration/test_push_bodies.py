"""The push endpoint never answers 500 to a body it can't read: 400 for anything that is not
a push envelope, however deep or malformed, 413 past the size cap."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterable

import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis_spanner.consumers.push import MAX_BODY_BYTES
from redis_spanner.schemas.settings import Settings

from tests.integration.push_support import certs, endpoint, issuer, post, snapshot
from tests.tokens import Issuer

__all__ = ["certs", "endpoint", "issuer"]  # fixtures


def _nested(depth: int) -> bytes:
    return b'{"message": ' * depth + b"1" + b"}" * depth


UNREADABLE = {
    "empty": b"",
    "not json": b"\x00\xff not json",
    "invalid utf-8": b'{"message": {"data": "\xff\xfe"}}',
    "deep arrays": b"[" * 200_000 + b"]" * 200_000,
    "deep objects": _nested(100_000),
    "deep attributes": b'{"message": {"messageId": "1", "attributes": ' + _nested(50_000)
                       + b"}}",
    "top-level list": b'[{"message": {}}]',
    "message is a list": b'{"message": []}',
    "message is text": b'{"message": "x"}',
    "data is a number": b'{"message": {"data": 12, "messageId": "1"}}',
    "bad base64": b'{"message": {"data": "%%%", "messageId": "1"}}',
    "no message id": b'{"message": {"data": "eA=="}}',
    "message id is an object": b'{"message": {"data": "eA==", "messageId": {}}}',
    "attributes is a list": b'{"message": {"data": "eA==", "messageId": "1", "attributes": []}}',
    "attribute not text": b'{"message": {"messageId": "1", "attributes": {"a": {"b": 1}}}}',
    "lone surrogate": b'{"message": {"messageId": "\\ud800", "data": "eA=="}}',
    "huge attempt": b'{"message": {"messageId": "1"}, "deliveryAttempt": 1e999}',
    "negative attempt": b'{"message": {"messageId": "1"}, "deliveryAttempt": -1}',
    "attempt is text": b'{"message": {"messageId": "1"}, "deliveryAttempt": "3"}',
    "long number": b'{"message": {"messageId": "1"}, "deliveryAttempt": 1' + b"0" * 10_000
                   + b"}",
}


def test_unreadable_bodies_answer_400(endpoint: str, issuer: Issuer, redis_client: redis.Redis,
                                      settings: Settings) -> None:
    """Every class of body that is not a push envelope (not JSON, nested past any parser,
    wrong shapes, bad base64, unencodable text, absurd numbers) answers 400 with a generic body,
    and nothing reaches Redis."""
    token = issuer.token()
    seen = {name: post(endpoint, body, token) for name, body in UNREADABLE.items()}
    assert {name: status for name, (status, _) in seen.items()} == dict.fromkeys(UNREADABLE, 400)
    assert all(json.loads(text) == {"error": "not a Pub/Sub push request"}
               for _, text in seen.values())
    assert snapshot(redis_client, settings.namespace) == {}


def raw_post(url: str, headers: dict[str, str], chunks: Iterable[bytes]) -> int:
    """POST over a plain socket, sending ``chunks`` until the server answers; its status."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    lines = ["POST /push HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for chunk in chunks:
            if select.select([conn], [], [], 0)[0]:
                break
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        status_line = conn.makefile("rb").readline()
    return int(status_line.split()[1])


def test_bodies_past_the_cap_answer_413(endpoint: str, issuer: Issuer) -> None:
    """A body over the cap is refused with 413 before it is read, whether its length is
    declared or it streams in chunks; a body at the cap is read (and refused as unreadable)."""
    auth = {"Authorization": f"Bearer {issuer.token()}"}
    declared = raw_post(endpoint, {**auth, "Content-Length": str(MAX_BODY_BYTES + 1)}, [])
    assert declared == 413
    mib = b" " * (1 << 20)
    chunked = raw_post(endpoint, {**auth, "Transfer-Encoding": "chunked"},
                       (b"%x\r\n%s\r\n" % (len(mib), mib)
                        for _ in range(MAX_BODY_BYTES // len(mib) + 2)))
    assert chunked == 413
    assert post(endpoint, b" " * MAX_BODY_BYTES, issuer.token())[0] == 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["message", "data", "messageId", "attributes", "deliveryAttempt",
                         "publishTime", "x"]), inner, max_size=5),
    max_leaves=20,
)


@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)))
def test_arbitrary_bodies_never_answer_500(endpoint: str, issuer: Issuer, body: bytes) -> None:
    """Whatever JSON or bytes arrive with a valid token, the answer is 400 (unreadable), 204
    (applied or dead-lettered) or 503 (retry): never a 500."""
    status, _ = post(endpoint, body, issuer.token())
    assert status in (204, 400, 503)

