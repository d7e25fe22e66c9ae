"""The relays' one touch point with google-cloud-pubsub.

Messages go out as Publish requests of up to ``REQUEST_MESSAGES`` messages and
``REQUEST_BYTES`` each (Pub/Sub's limits per request are 1,000 and 10 MB), ``IN_FLIGHT`` at a
time, through the client's generated API. The relay always has a whole round of rows in hand,
so it packs the requests itself: one round trip per thousand rows, where the client's
time-based batching sends one per few dozen (measured on the emulator: about 3 x the rate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent import futures
from functools import partial
from typing import Any, Protocol

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.pubsub_v1 import types as gapic
from redis_spanner.producers.background import in_background
from redis_spanner.producers.outbox_rows import REASON_CHARS, OutboxRow, PoisonRow
from redis_spanner.schemas.errors import TransientError

REQUEST_MESSAGES = 1000
REQUEST_BYTES = 9_000_000
IN_FLIGHT = 4
MESSAGE_BYTES = 10_000_000
"""Pub/Sub's limit on one message, data and attributes together."""
_REFUSED = (gexc.InvalidArgument,)
"""Pub/Sub's answer to a request it will never accept as it is."""
_RETRIED = gretry.if_exception_type(
    gexc.Aborted, gexc.Cancelled, gexc.DeadlineExceeded, gexc.InternalServerError,
    gexc.ResourceExhausted, gexc.ServiceUnavailable, gexc.Unknown,
)
"""The answers the client library retries a Publish on (its default for that call)."""
_SLICE = 0.1
_RawMessage: Any = gapic.PubsubMessage.pb()
_RawRequest: Any = gapic.PublishRequest.pb()


class Message(Protocol):
    """What a relay publishes: an outbox row or a change-stream event."""

    @property
    def data(self) -> bytes: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...


class Pending:
    """Publishes in flight; ``wait`` returns once Pub/Sub holds every one."""

    def __init__(self, sent: list[futures.Future[list[str]]], count: int,
                 timeout: float) -> None:
        self._sent = sent
        self._count = count
        self._timeout = timeout

    def __len__(self) -> int:
        return self._count

    def wait(self) -> list[str]:
        _, not_done = futures.wait(self._sent, timeout=self._timeout)
        if not_done:
            raise TransientError(f"pubsub: {len(not_done)} publish request(s) timed out")
        try:
            return [message_id for f in self._sent for message_id in f.result()]
        except Exception as e:
            raise TransientError(f"pubsub publish failed: {type(e).__name__}: {e}") from e


class _Refused(Exception):
    """Some messages of a request were refused for good: their indexes and the answer."""

    def __init__(self, refused: list[tuple[int, BaseException]], accepted: int) -> None:
        super().__init__(f"{len(refused)} message(s) refused")
        self.refused = refused
        self.accepted = accepted


class PubSubPublisher:
    """Publishes batches of messages and returns once Pub/Sub holds every one it accepts."""

    def __init__(self, topic_path: str, *, timeout: float = 30.0,
                 in_flight: int = IN_FLIGHT) -> None:
        self._topic = topic_path
        self._timeout = timeout
        self._client = pubsub_v1.PublisherClient()
        self._retry = gretry.Retry(initial=0.1, maximum=2.0, timeout=timeout,
                                   predicate=_RETRIED)
        self._slots = threading.BoundedSemaphore(in_flight)

    def submit(self, messages: Sequence[Message]) -> Pending:
        """Start publishing without waiting: the caller waits when it needs the guarantee."""
        raw = [_raw(m) for m in messages]
        sent = [in_background(partial(self._send, chunk), "publish", self._slots)
                for chunk in _requests(raw)]
        return Pending(sent, len(raw), self._timeout)

    def publish(self, rows: Sequence[OutboxRow], stop: threading.Event) -> list[PoisonRow]:
        """Rows Pub/Sub refused for good come back as poison: those too large or with
        attributes it can't take, and those it answers ``InvalidArgument`` for while
        accepting others (a refusal of every one is the topic's problem, not the rows').
        Any other failure, a timeout, or ``stop`` set before every publish was confirmed
        raises ``TransientError``."""
        refused: list[PoisonRow] = []
        sendable: list[tuple[OutboxRow, Any]] = []
        for row in rows:
            try:
                sendable.append((row, _raw(row)))
            except (ValueError, TypeError) as e:
                refused.append(_refusal(row, e))
        chunks: list[tuple[int, list[Any]]] = []
        start = 0
        for chunk in _requests([m for _, m in sendable]):
            chunks.append((start, chunk))
            start += len(chunk)
        pending = {in_background(partial(self._send_or_split, chunk), "publish",
                                 self._slots): first for first, chunk in chunks}
        deadline = time.monotonic() + self._timeout
        waiting = set(pending)
        while waiting:
            if stop.is_set():
                raise TransientError(f"pubsub: stopped with {len(waiting)} publish "
                                     "request(s) unconfirmed")
            if time.monotonic() > deadline:
                raise TransientError(f"pubsub: {len(waiting)} publish request(s) timed out")
            _, waiting = futures.wait(waiting, timeout=_SLICE)
        failed: list[tuple[int, BaseException]] = []
        accepted = 0
        for future, first in pending.items():
            error = future.exception()
            if isinstance(error, _Refused):
                failed += [(first + i, e) for i, e in error.refused]
                accepted += error.accepted
            elif error is not None:
                raise TransientError(f"pubsub publish failed: {type(error).__name__}: "
                                     f"{error}") from error
            else:
                accepted += len(future.result())
        if failed and not accepted:
            first_error = failed[0][1]
            raise TransientError(f"pubsub: {len(failed)} publish(es) failed: "
                                 f"{type(first_error).__name__}: {first_error}") from first_error
        return refused + [_refusal(sendable[i][0], e) for i, e in failed]

    def _send(self, messages: list[Any]) -> list[str]:
        request = _RawRequest(topic=self._topic, messages=messages)
        response = self._client.api.publish(request=gapic.PublishRequest.wrap(request),
                                            retry=self._retry, timeout=self._timeout)
        return list(response.message_ids)

    def _send_or_split(self, messages: list[Any]) -> list[str]:
        """Send ``messages``; when Pub/Sub refuses the request, halve it until the messages
        it refuses are found, sending the rest. Raises ``_Refused`` naming those."""
        try:
            return self._send(messages)
        except _REFUSED as e:
            if len(messages) == 1:
                raise _Refused([(0, e)], 0) from e
        half = len(messages) // 2
        refused: list[tuple[int, BaseException]] = []
        ids: list[str] = []
        for offset, part in ((0, messages[:half]), (half, messages[half:])):
            try:
                ids += self._send_or_split(part)
            except _Refused as r:
                refused += [(offset + i, e) for i, e in r.refused]
                ids += [""] * r.accepted
        if refused:
            raise _Refused(refused, len(ids))
        return ids

    def close(self) -> None:
        self._client.stop()


def _raw(message: Message) -> Any:
    """The message as the request carries it; raises ``ValueError`` or ``TypeError`` for one
    Pub/Sub could never take."""
    if not isinstance(message.data, bytes):
        raise TypeError("data must be bytes")
    attributes = dict(message.attributes)
    size = len(message.data)
    for key, value in attributes.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise TypeError("attributes must be text")
        size += len(key.encode()) + len(value.encode())
    if size > MESSAGE_BYTES:
        raise ValueError(f"message is {size} bytes; Pub/Sub takes at most {MESSAGE_BYTES}")
    return _RawMessage(data=message.data, attributes=attributes)


def _requests(messages: list[Any]) -> list[list[Any]]:
    """``messages`` cut into requests within Pub/Sub's limits, in order."""
    chunks: list[list[Any]] = []
    chunk: list[Any] = []
    size = 0
    for message in messages:
        weight = message.ByteSize()
        if chunk and (len(chunk) >= REQUEST_MESSAGES or size + weight > REQUEST_BYTES):
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(message)
        size += weight
    if chunk:
        chunks.append(chunk)
    return chunks


def _refusal(row: OutboxRow, error: BaseException) -> PoisonRow:
    reason = f"refused-by-pubsub: {type(error).__name__}: {error}"
    return PoisonRow(row.shard, row.event_id, reason[:REASON_CHARS])
