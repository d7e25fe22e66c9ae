"""The push transport: an HTTP endpoint for a Pub/Sub push subscription (Cloud Run).

Pub/Sub POSTs one message per request. A 2xx answer acks it; anything else makes Pub/Sub
redeliver it with the subscription's backoff, and forward it to the dead-letter topic after
max_delivery_attempts. The core decides exactly as for the pull worker: dead letters are
published by the core and then acked (204); transient failures answer 503.

Requests that arrive together are handed to the core as one batch (up to ``max_batch``, waiting
at most ``linger_ms`` for company), so concurrent pushes still cost one Redis round trip.

Every push must carry the subscription's OIDC token (``push_auth``); Cloud Run's invoker check
in front of it is a second lock, not the only one. Bodies are read up to ``MAX_BODY_BYTES``
(413 past it), anything that is not a push envelope answers 400, and error bodies say what class
of thing went wrong, never a host name or an exception's text: the details go to the log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis_spanner.consumers.messages import BatchProcessor, Disposition, Inbound, Outcome
from redis_spanner.consumers.push_auth import Forbidden, PushVerifier, Unauthenticated
from redis_spanner.schemas.errors import TransientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

PUBSUB_MAX_MESSAGE_BYTES = 10_000_000
MAX_BODY_BYTES = 4 * -(-PUBSUB_MAX_MESSAGE_BYTES // 3) + 512 * 1024
"""A push body holds the message's data in base64 plus its attributes: Pub/Sub's largest message
fits, with room for the envelope; anything bigger answers 413 without being read further."""


class PushFormatError(ValueError):
    """The request is not a Pub/Sub push envelope."""


def parse_push(body: bytes) -> Inbound:
    """The message of a Pub/Sub push request (the wrapped JSON format).

    Raises ``PushFormatError`` for anything else: not JSON, nested too deep to read, or any
    field of the wrong shape.
    """
    try:
        envelope = json.loads(body)
        message = _object(envelope, "message")
        data = base64.b64decode(_text(message, "data", ""), validate=True)
        message_id = message.get("messageId") or message.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise TypeError("messageId is not a non-empty string")
        attributes = message.get("attributes")
        attributes = {} if attributes is None else attributes
        if not isinstance(attributes, dict) or not all(
                isinstance(v, str) for v in attributes.values()):
            raise TypeError("attributes is not an object of strings")
        attempt = envelope.get("deliveryAttempt")
        attempt = 0 if attempt is None else attempt
        if not isinstance(attempt, int) or isinstance(attempt, bool) or not 0 <= attempt < 2**31:
            raise TypeError("deliveryAttempt is not a count")
        for text in (message_id, *attributes, *attributes.values()):
            text.encode()  # lone surrogates would fail later, when dead-lettering
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error
            ) as e:
        raise PushFormatError(f"not a Pub/Sub push request: {type(e).__name__}: {e}") from e
    return Inbound(message_id, data, dict(attributes), attempt, _publish_time(message))


def _object(parent: Any, name: str) -> dict[str, Any]:
    value = parent.get(name) if isinstance(parent, dict) else None
    if not isinstance(value, dict):
        raise TypeError(f"{name} is not an object")
    return value


def _text(parent: dict[str, Any], name: str, default: str) -> str:
    value = parent.get(name, default)
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value


def _publish_time(message: dict[str, Any]) -> float | None:
    text = message.get("publishTime") or message.get("publish_time")
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class _Batcher:
    """Collects concurrent requests into one ``process`` call run in a worker thread."""

    processor: BatchProcessor
    max_batch: int = 100
    linger_ms: float = 5.0
    _pending: list[tuple[Inbound, asyncio.Future[Outcome]]] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None

    async def submit(self, message: Inbound) -> Outcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((message, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self.linger_ms / 1000)
        batch = self._pending[: self.max_batch]
        self._pending = self._pending[self.max_batch :]
        self._flusher = (
            asyncio.get_running_loop().create_task(self._flush()) if self._pending else None
        )
        try:
            outcomes = await asyncio.to_thread(self.processor.process, [m for m, _ in batch])
        except Exception as e:  # the core never raises for a message; guard the endpoint anyway
            log.exception("push batch failed")
            for _, future in batch:
                future.set_exception(e)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            future.set_result(outcome)


class BodyTooLarge(Exception):
    """The request body is over ``MAX_BODY_BYTES``."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, text: str) -> Response:
    return JSONResponse({"error": text}, status_code=status)


def create_app(processor: BatchProcessor, *, verifier: PushVerifier | None,
               max_batch: int = 100, linger_ms: float = 5.0) -> Starlette:
    """The push endpoint. ``verifier`` None accepts unauthenticated pushes: only ``serve``
    against the emulators passes it (see ``push_auth.auth_config``)."""
    batcher = _Batcher(processor, max_batch, linger_ms)

    async def push(request: Request) -> Response:
        if verifier is not None:
            try:
                await asyncio.to_thread(verifier.verify, request.headers.get("authorization"))
            except Unauthenticated as e:
                log.warning("push refused: %s", e)
                return _error(401, "unauthenticated")
            except Forbidden as e:
                log.warning("push refused: %s", e)
                return _error(403, "forbidden")
            except TransientError as e:
                log.warning("push not verified: %s", e)
                return _error(503, "unavailable")
        try:
            message = parse_push(await read_body(request))
        except BodyTooLarge:
            return _error(413, "body too large")
        except PushFormatError as e:
            log.warning("push refused: %s", e)
            return _error(400, "not a Pub/Sub push request")
        try:
            outcome = await batcher.submit(message)
        except Exception:
            return _error(503, "unavailable")
        if outcome.disposition is Disposition.ACK:
            return Response(status_code=204)
        log.warning("push %s not applied: %s", message.message_id, outcome.error)
        return _error(503, "not applied")

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[
        Route("/", push, methods=["POST"]),
        Route("/push", push, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
    ])
