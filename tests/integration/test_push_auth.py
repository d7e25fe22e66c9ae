"""The push endpoint's front door, against a running server on the real emulators and Redis:
only Pub/Sub's token for our audience and push identity gets a push applied, and no body it
cannot read ever answers 500."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis_spanner.consumers.push import MAX_BODY_BYTES, create_app
from redis_spanner.consumers.push_auth import PushAuthConfig, PushVerifier
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.worker import Consumer
from redis_spanner.infra.processes import free_ports, http_ok
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.tokens import AUDIENCE, PUSH_ACCOUNT, CertsServer, Issuer, serving_certs
from tests.waiting import wait_until

Post = Callable[..., tuple[int, bytes]]


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def certs(issuer: Issuer) -> Iterator[CertsServer]:
    with serving_certs(issuer.certs) as server:
        yield server


def _serve(app: Any) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30)
    try:
        yield f"http://127.0.0.1:{port}/push"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def endpoint(consumer: Consumer, certs: CertsServer) -> Iterator[str]:
    """``serve``'s app with verification on, its certificates served on loopback."""
    verifier = PushVerifier(PushAuthConfig(AUDIENCE, PUSH_ACCOUNT, certs.url))
    yield from _serve(create_app(consumer.processor, verifier=verifier))


def post(url: str, body: bytes, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def push_body(account: str) -> tuple[bytes, Event]:
    event = Event(str(uuid.uuid4()), EventType.ROW_CHANGED, "Accounts", (account,),
                  time.time_ns())
    body = json.dumps({
        "message": {"data": base64.b64encode(event.encode()).decode(),
                    "messageId": event.event_id, "attributes": event.attributes(),
                    "publishTime": "2026-12-01T12:00:00Z"},
        "subscription": "projects/p/subscriptions/push",
    }).encode()
    return body, event


def snapshot(client: redis.Redis, namespace: str) -> dict[str, Any]:
    """Every key of the namespace with its type and content."""
    found: dict[str, Any] = {}
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        kind = client.type(key)
        found[key] = (kind, client.hgetall(key) if kind == "hash" else None)
    return found


def test_token_matrix(issuer: Issuer, endpoint: str, cache: RedisCache, catalog: Catalog,
                      redis_client: redis.Redis, settings: Settings) -> None:
    """Only a token signed by the issuer's key, unexpired, for our audience, from Google's
    issuer, naming the push account with a verified email gets a push applied (204). Every
    other token answers 401 or 403 with a generic body, and nothing of theirs reaches Redis."""
    now = int(time.time())
    stranger = Issuer(key_id=issuer.key_id)  # same key id, another key: the signature fails
    header, payload, _ = issuer.token().split(".")
    cases: dict[str, tuple[str | None, int]] = {
        "none": (None, 401),
        "empty": ("", 401),
        "garbage": ("not.a.jwt", 401),
        "expired": (issuer.token(iat=now - 7200, exp=now - 3600), 401),
        "wrong audience": (issuer.token(aud="https://elsewhere.example.test/push"), 401),
        "no audience": (issuer.token(aud=None), 401),
        "wrong issuer": (issuer.token(iss="https://evil.example.test"), 401),
        "no issuer": (issuer.token(iss=None), 401),
        "wrong email": (issuer.token(email="someone@example-project.iam.gserviceaccount.com"),
                        403),
        "no email": (issuer.token(email=None), 403),
        "email not verified": (issuer.token(email_verified=False), 403),
        "email_verified as text": (issuer.token(email_verified="true"), 403),
        "bad signature": (stranger.token(), 401),
        "unknown key id": (Issuer(key_id="other-key").token(), 401),
        "signature stripped": (f"{header}.{payload}.", 401),
        "valid": (issuer.token(), 204),
    }
    before = snapshot(redis_client, settings.namespace)
    assert before == {}
    seen: dict[str, tuple[int, bytes]] = {}
    keys: dict[str, str] = {}
    for n, (name, (token, _)) in enumerate(cases.items()):
        body, _event = push_body(f"acct-{n}")
        keys[name] = catalog.key(catalog.template("account"), [f"acct-{n}"]).key
        seen[name] = post(endpoint, body, token)
    assert {name: status for name, (status, _) in seen.items()} == {
        name: expected for name, (_, expected) in cases.items()}
    for name, (status, text) in seen.items():
        if status != 204:
            assert json.loads(text) in ({"error": "unauthenticated"}, {"error": "forbidden"}), name
    written = {name for name, key in keys.items() if cache.get([key])[0] is not None}
    assert written == {"valid"}
    assert set(snapshot(redis_client, settings.namespace)) == {keys["valid"]}


def test_forged_push_changes_nothing(endpoint: str, redis_client: redis.Redis,
                                     settings: Settings, issuer: Issuer) -> None:
    """A forged push without a token, or with Basic credentials, gets 401 and leaves Redis
    exactly as it was, even for a key that is already cached."""
    body, _ = push_body("victim")
    assert post(endpoint, body, issuer.token())[0] == 204
    before = snapshot(redis_client, settings.namespace)
    assert before
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        forged, _ = push_body("victim")
        status, text = post(endpoint, forged, headers=headers)
        assert (status, json.loads(text)) == (401, {"error": "unauthenticated"})
    assert snapshot(redis_client, settings.namespace) == before


def test_certificates_are_fetched_once_for_many_pushes(endpoint: str, issuer: Issuer,
                                                       certs: CertsServer) -> None:
    """Verification reads the certificates from the cache their max-age allows: twenty pushes
    and a refused one cost one fetch."""
    for n in range(20):
        body, _ = push_body(f"many-{n}")
        assert post(endpoint, body, issuer.token())[0] == 204
    assert post(endpoint, push_body("x")[0], issuer.token(aud="other"))[0] == 401
    assert len(certs.fetches) == 1


def test_unreachable_certificates_answer_503_and_apply_nothing(
        consumer: Consumer, issuer: Issuer, cache: RedisCache, catalog: Catalog) -> None:
    """When the certificates cannot be fetched, a push is neither applied nor refused for
    good: 503 makes Pub/Sub redeliver it, and the body names no address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    verifier = PushVerifier(PushAuthConfig(AUDIENCE, PUSH_ACCOUNT,
                                           f"http://127.0.0.1:{closed}/certs"))
    for url in _serve(create_app(consumer.processor, verifier=verifier)):
        body, _ = push_body("unverified")
        status, text = post(url, body, issuer.token())
        assert (status, json.loads(text)) == (503, {"error": "unavailable"})
        assert b"127.0.0.1" not in text
    key = catalog.key(catalog.template("account"), ["unverified"]).key
    assert cache.get([key]) == [None]


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


def test_serve_command_verifies_tokens(provisioned: Settings, issuer: Issuer, certs: CertsServer,
                                       cache: RedisCache, catalog: Catalog,
                                       tmp_path: Path) -> None:
    """`redis-spanner serve`, started as Cloud Run starts it (settings from the environment),
    verifies tokens: none gets 401, another account's 403, Pub/Sub's 204 and is applied."""
    (port,) = free_ports(1)
    env = {**os.environ, "REDIS_SPANNER_PUSH_AUDIENCE": AUDIENCE,
           "REDIS_SPANNER_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
           "REDIS_SPANNER_PUSH_CERTS_URL": certs.url, "PORT": str(port)}
    env.pop("REDIS_SPANNER_PUSH_AUTH", None)
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "redis_spanner.infra.cli", "serve", "--host", "127.0.0.1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/healthz") or server.poll() is not None, timeout=60)
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        assert post(f"{url}/push", push_body("served-0")[0])[0] == 401
        other = issuer.token(email="someone@example-project.iam.gserviceaccount.com")
        assert post(f"{url}/push", push_body("served-1")[0], other)[0] == 403
        assert post(f"{url}/push", push_body("served-2")[0], issuer.token())[0] == 204
        keys = [catalog.key(catalog.template("account"), [f"served-{n}"]).key for n in range(3)]
        assert [entry is not None for entry in cache.get(keys)] == [False, False, True]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
