"""The push transport: an HTTP endpoint for a Pub/Sub push subscription (Cloud Run).

Pub/Sub POSTs one message per request. A 2xx answer acks it; anything else makes Pub/Sub
redeliver it with the subscription's backoff, and forward it to the dead-letter topic after
max_delivery_attempts. The core decides exactly as for the pull worker: dead letters are
published by the core and then acked (204); transient failures answer 503.

Requests that arrive together are handed to the core as one batch (up to ``max_batch``, waiting
at most ``linger_ms`` for company), so concurrent pushes still cost one Redis round trip.

Authentication is Cloud Run's: deploy with ``--no-allow-unauthenticated`` and give the push
subscription's service account the invoker role.
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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)


class PushFormatError(ValueError):
    """The request is not a Pub/Sub push envelope."""


def parse_push(body: bytes) -> Inbound:
    """The message of a Pub/Sub push request (the wrapped JSON format)."""
    try:
        envelope = json.loads(body)
        message = envelope["message"]
        data = base64.b64decode(message.get("data", ""), validate=True)
        message_id = str(message.get("messageId") or message["message_id"])
        attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
        attempt = int(envelope.get("deliveryAttempt") or 0)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
        raise PushFormatError(f"not a Pub/Sub push request: {type(e).__name__}: {e}") from e
    return Inbound(message_id, data, attributes, attempt, _publish_time(message))


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


def create_app(processor: BatchProcessor, *, max_batch: int = 100, linger_ms: float = 5.0
               ) -> Starlette:
    batcher = _Batcher(processor, max_batch, linger_ms)

    async def push(request: Request) -> Response:
        try:
            message = parse_push(await request.body())
        except PushFormatError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        try:
            outcome = await batcher.submit(message)
        except Exception:
            return JSONResponse({"error": "internal error"}, status_code=500)
        if outcome.disposition is Disposition.ACK:
            return Response(status_code=204)
        return JSONResponse({"error": str(outcome.error or "not applied")}, status_code=503)

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
