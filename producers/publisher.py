"""The relay's one touch point with google-cloud-pubsub."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures

from google.api_core import retry as gretry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.cloud.pubsub_v1.types import BatchSettings, PublisherOptions
from redis_spanner.producers.outbox_store import OutboxRow
from redis_spanner.schemas.errors import TransientError


class PubSubPublisher:
    """Publishes a batch of outbox rows and returns only once Pub/Sub holds every one."""

    def __init__(self, topic_path: str, *, timeout: float = 30.0) -> None:
        self._topic = topic_path
        self._timeout = timeout
        self._client = pubsub_v1.PublisherClient(
            batch_settings=BatchSettings(max_messages=500, max_latency=0.005),
            publisher_options=PublisherOptions(
                retry=gretry.Retry(initial=0.1, maximum=2.0, timeout=timeout),
                timeout=timeout,
            ),
        )

    def publish(self, rows: Sequence[OutboxRow]) -> list[str]:
        pending = [self._client.publish(self._topic, r.data, **r.attributes) for r in rows]
        _, not_done = futures.wait(pending, timeout=self._timeout)
        if not_done:
            raise TransientError(f"pubsub: {len(not_done)} publish(es) timed out")
        try:
            return [f.result() for f in pending]
        except Exception as e:
            raise TransientError(f"pubsub publish failed: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        self._client.stop()
