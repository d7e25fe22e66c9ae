"""Push authentication against a running server on the real emulators and Redis: only
Pub/Sub's token for our audience and push identity gets a push applied."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
from redis_spanner.consumers.push import create_app
from redis_spanner.consumers.push_auth import PushAuthConfig, PushVerifier
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.worker import Consumer
from redis_spanner.infra.local.processes import free_ports, http_ok
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.integration.push_support import (
    certs,
    endpoint,
    issuer,
    post,
    push_body,
    serve_app,
    snapshot,
)
from tests.tokens import AUDIENCE, PUSH_ACCOUNT, CertsServer, Issuer
from tests.waiting import wait_until

__all__ = ["certs", "endpoint", "issuer"]  # fixtures


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
    with serve_app(create_app(consumer.processor, verifier=verifier)) as url:
        body, _ = push_body("unverified")
        status, text = post(url, body, issuer.token())
        assert (status, json.loads(text)) == (503, {"error": "unavailable"})
        assert b"127.0.0.1" not in text
    key = catalog.key(catalog.template("account"), ["unverified"]).key
    assert cache.get([key]) == [None]


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
