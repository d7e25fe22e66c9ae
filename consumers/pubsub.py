"""The consumers' one touch point with google-cloud-pubsub: synchronous pull, ack and nack,
and the dead-letter publisher."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from importlib import metadata

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from consumers.messages import Inbound
from schemas.errors import PermanentError, TransientError

DEAD_LETTER_PREFIX = "dl_"


def consumer_version() -> str:
    try:
        return metadata.version("redis-spanner")
    except metadata.PackageNotFoundError:
        return "unknown"


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")


class PullSubscription:
    """Synchronous pull: a whole batch per call, so the core writes Redis once per batch."""

    def __init__(self, subscription_path: str, *, max_messages: int = 500) -> None:
        self.path = subscription_path
        self._max = max_messages
        self._client = pubsub_v1.SubscriberClient()

    def pull(self, timeout: float = 5.0) -> list[tuple[str, Inbound]]:
        """(ack id, message) pairs; an empty list when nothing arrived within ``timeout``."""
        try:
            response = self._client.pull(
                subscription=self.path, max_messages=self._max, timeout=timeout
            )
        except gexc.DeadlineExceeded:
            return []
        except gexc.GoogleAPICallError as e:
            raise TransientError(f"pubsub pull failed: {type(e).__name__}") from e
        return [
            (
                received.ack_id,
                Inbound(
                    message_id=received.message.message_id,
                    data=bytes(received.message.data),
                    attributes=dict(received.message.attributes),
                    delivery_attempt=received.delivery_attempt,
                    publish_time=received.message.publish_time.timestamp(),
                ),
            )
            for received in response.received_messages
        ]

    def ack(self, ack_ids: Sequence[str]) -> None:
        if ack_ids:
            self._call(lambda: self._client.acknowledge(subscription=self.path, ack_ids=ack_ids))

    def nack(self, ack_ids: Sequence[str]) -> None:
        """Ask for redelivery now (ack deadline 0); the subscription's retry policy paces it."""
        if ack_ids:
            self._call(lambda: self._client.modify_ack_deadline(
                subscription=self.path, ack_ids=ack_ids, ack_deadline_seconds=0
            ))

    @staticmethod
    def _call(fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except gexc.GoogleAPICallError as e:
            raise TransientError(f"pubsub ack/nack failed: {type(e).__name__}") from e

    def close(self) -> None:
        self._client.close()


class DeadLetterPublisher:
    """Publishes a message that can never succeed to the dead-letter topic, with its story."""

    def __init__(self, topic_path: str, source_subscription: str, *, timeout: float = 30.0):
        self._topic = topic_path
        self._source = source_subscription
        self._timeout = timeout
        self._client = pubsub_v1.PublisherClient()

    def send(self, message: Inbound, error: PermanentError) -> None:
        attributes = {k: v for k, v in message.attributes.items()
                      if not k.startswith(DEAD_LETTER_PREFIX)}
        first_failure = message.attributes.get(DEAD_LETTER_PREFIX + "first_failure_time") or (
            _iso(message.publish_time) if message.delivery_attempt > 1 and message.publish_time
            else _iso(dt.datetime.now(dt.UTC).timestamp())
        )
        attributes.update({
            DEAD_LETTER_PREFIX + "reason": error.reason,
            DEAD_LETTER_PREFIX + "error_class": type(error).__name__,
            DEAD_LETTER_PREFIX + "error": str(error)[:1024],
            DEAD_LETTER_PREFIX + "source_subscription": self._source,
            DEAD_LETTER_PREFIX + "delivery_attempts": str(max(message.delivery_attempt, 1)),
            DEAD_LETTER_PREFIX + "first_failure_time": first_failure,
            DEAD_LETTER_PREFIX + "consumer_version": consumer_version(),
            DEAD_LETTER_PREFIX + "original_message_id": message.message_id,
        })
        try:
            self._client.publish(self._topic, message.data, **attributes).result(self._timeout)
        except Exception as e:
            raise TransientError(f"dead-letter publish failed: {type(e).__name__}") from e

    def close(self) -> None:
        self._client.stop()
