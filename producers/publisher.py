"""The relay's one touch point with google-cloud-pubsub."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent import futures

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.cloud.pubsub_v1.types import BatchSettings, PublisherOptions
from redis_spanner.producers.outbox_rows import REASON_CHARS, OutboxRow, PoisonRow
from redis_spanner.schemas.errors import TransientError

_REFUSED = (gexc.InvalidArgument, gexc.FailedPrecondition)
"""Pub/Sub's answers to a message that will never be accepted as it is."""
_SLICE = 0.1


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

    def publish(self, rows: Sequence[OutboxRow], stop: threading.Event) -> list[PoisonRow]:
        """Rows Pub/Sub refused for good come back as poison; any other failure, a timeout, or
        ``stop`` set before every publish was confirmed raises ``TransientError``."""
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
        failed = 0
        for row, future in pending:
            error = future.exception()
            if error is None:
                continue
            if isinstance(error, _REFUSED):
                refused.append(_refusal(row, error))
            else:
                failed += 1
                last = error
        if failed:
            raise TransientError(f"pubsub: {failed} publish(es) failed: "
                                 f"{type(last).__name__}: {last}") from last
        return refused

    def close(self) -> None:
        self._client.stop()


def _refusal(row: OutboxRow, error: BaseException) -> PoisonRow:
    reason = f"refused-by-pubsub: {type(error).__name__}: {error}"
    return PoisonRow(row.shard, row.event_id, reason[:REASON_CHARS])
