"""The relays' one touch point with google-cloud-pubsub."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent import futures
from typing import Any, Protocol

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.cloud.pubsub_v1.types import BatchSettings, PublisherOptions
from redis_spanner.producers.outbox_rows import REASON_CHARS, OutboxRow, PoisonRow
from redis_spanner.schemas.errors import TransientError

_REFUSED = (gexc.InvalidArgument,)
"""Pub/Sub's answer to a message it will never accept as it is."""
_SLICE = 0.1


class Message(Protocol):
    """What a relay publishes: an outbox row or a change-stream event."""

    @property
    def data(self) -> bytes: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...


class Pending:
    """Publishes in flight; ``wait`` returns once Pub/Sub holds every one."""

    def __init__(self, sent: list[Any], timeout: float) -> None:
        self._sent = sent
        self._timeout = timeout

    def __len__(self) -> int:
        return len(self._sent)

    def wait(self) -> list[str]:
        _, not_done = futures.wait(self._sent, timeout=self._timeout)
        if not_done:
            raise TransientError(f"pubsub: {len(not_done)} publish(es) timed out")
        try:
            return [f.result() for f in self._sent]
        except Exception as e:
            raise TransientError(f"pubsub publish failed: {type(e).__name__}: {e}") from e


class PubSubPublisher:
    """Publishes a batch of outbox rows and returns once Pub/Sub holds every one it accepts."""

    def __init__(self, topic_path: str, *, timeout: float = 30.0) -> None:
        self._topic = topic_path
        self._timeout = timeout
        self._client = pubsub_v1.PublisherClient(
            batch_settings=BatchSettings(max_messages=500, max_latency=0.005),
            publisher_options=PublisherOptions(
                retry=gretry.Retry(initial=0.1, maximum=2.0, timeout=timeout,
                                   predicate=gretry.if_transient_error),
                timeout=timeout,
            ),
        )

    def submit(self, messages: Sequence[Message]) -> Pending:
        """Start publishing without waiting: the caller waits when it needs the guarantee."""
        return Pending([self._client.publish(self._topic, m.data, **m.attributes)
                        for m in messages], self._timeout)

    def publish(self, rows: Sequence[OutboxRow], stop: threading.Event) -> list[PoisonRow]:
        """Rows Pub/Sub refused for good come back as poison: those the client refuses (too
        large) and those the server answers ``InvalidArgument`` while accepting others of the
        batch (a refusal of all of them is the topic's problem, not the rows'). Any other
        failure, a timeout, or ``stop`` set before every publish was confirmed raises
        ``TransientError``."""
        refused: list[PoisonRow] = []
        pending: list[tuple[OutboxRow, futures.Future[str]]] = []
        for row in rows:
            try:
                pending.append((row, self._client.publish(self._topic, row.data,
                                                          **row.attributes)))
            except (ValueError, TypeError) as e:  # too large, or attributes it can't take
                refused.append(_refusal(row, e))
        deadline = time.monotonic() + self._timeout
        waiting = {f for _, f in pending}
        while waiting:
            if stop.is_set():
                raise TransientError(f"pubsub: stopped with {len(waiting)} publish(es) "
                                     "unconfirmed")
            if time.monotonic() > deadline:
                raise TransientError(f"pubsub: {len(waiting)} publish(es) timed out")
            _, waiting = futures.wait(waiting, timeout=_SLICE)
        errors = [(row, f.exception()) for row, f in pending]
        failed = [(row, e) for row, e in errors if e is not None]
        if not failed:
            return refused
        accepted = len(errors) - len(failed)
        if accepted and all(isinstance(e, _REFUSED) for _, e in failed):
            # Refused beside accepted siblings: it is the message, not the topic.
            return refused + [_refusal(row, e) for row, e in failed if e is not None]
        first = failed[0][1]
        raise TransientError(f"pubsub: {len(failed)} publish(es) failed: "
                             f"{type(first).__name__}: {first}") from first

    def close(self) -> None:
        self._client.stop()


def _refusal(row: OutboxRow, error: BaseException) -> PoisonRow:
    reason = f"refused-by-pubsub: {type(error).__name__}: {error}"
    return PoisonRow(row.shard, row.event_id, reason[:REASON_CHARS])
