"""The relays' one touch point with google-cloud-pubsub."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent import futures
from typing import Any, Protocol

from google.api_core import retry as gretry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.cloud.pubsub_v1.types import BatchSettings, PublisherOptions
from redis_spanner.schemas.errors import TransientError


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
    """Publishes batches of messages; ``publish`` returns only once Pub/Sub holds every one."""

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

    def submit(self, messages: Sequence[Message]) -> Pending:
        """Start publishing without waiting: the caller waits when it needs the guarantee."""
        return Pending([self._client.publish(self._topic, m.data, **m.attributes)
                        for m in messages], self._timeout)

    def publish(self, messages: Sequence[Message]) -> list[str]:
        return self.submit(messages).wait()

    def close(self) -> None:
        self._client.stop()
