"""Shared by the push endpoint's tests: a locally signed issuer, the endpoint served with
verification on (uvicorn in-process, on the real emulators and Redis), and request helpers."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import uvicorn
from redis_spanner.consumers.push import create_app
from redis_spanner.consumers.push_auth import PushAuthConfig, PushVerifier
from redis_spanner.consumers.worker import Consumer
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType

from tests.tokens import AUDIENCE, PUSH_ACCOUNT, CertsServer, Issuer, serving_certs
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def certs(issuer: Issuer) -> Iterator[CertsServer]:
    with serving_certs(issuer.certs) as server:
        yield server


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in this process; its push URL."""
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
    with serve_app(create_app(consumer.processor, verifier=verifier)) as url:
        yield url


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


