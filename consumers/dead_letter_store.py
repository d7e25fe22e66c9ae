"""The dead-letter tools' touch point with google-cloud-pubsub: pull and settle the hold
subscription, republish to the events topic.

Every call is bounded in time (the client's default retries run for a minute), so an outage
becomes an error within ``deadline`` seconds instead of a silent wait. Only calls that exist on
real Pub/Sub and on the emulator alike are used: synchronous pull, acknowledge,
modify_ack_deadline, publish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from consumers.messages import Inbound
from schemas.errors import PermanentError, TransientError

T = TypeVar("T")
ACK_CHUNK = 1000
_RETRIED = gretry.if_exception_type(
    gexc.ServiceUnavailable, gexc.InternalServerError, gexc.Aborted, gexc.Unknown,
)


def _bounded(deadline: float) -> gretry.Retry:
    return gretry.Retry(initial=0.1, maximum=2.0, multiplier=2.0, predicate=_RETRIED,
                        timeout=deadline)


def _chunks(ack_ids: Sequence[str]) -> Iterator[list[str]]:
    """Pub/Sub caps a request's size: ack or release at most ``ACK_CHUNK`` ids per call."""
    for start in range(0, len(ack_ids), ACK_CHUNK):
        yield list(ack_ids[start:start + ACK_CHUNK])


def _translated(what: str, path: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except gexc.NotFound as e:
        raise PermanentError(f"{path} does not exist (run 'redis-spanner provision')") from e
    except gexc.PermissionDenied as e:
        raise PermanentError(f"{what} {path}: permission denied") from e
    except gexc.RetryError as e:
        cause = e.cause.message if isinstance(e.cause, gexc.GoogleAPICallError) else e.cause
        raise TransientError(f"pubsub unavailable: {what} {path} gave up ({cause})") from e
    except gexc.GoogleAPICallError as e:
        raise TransientError(f"pubsub {what} {path} failed: {e.code} {e.message}") from e
    except TimeoutError as e:
        raise TransientError(f"pubsub unavailable: {what} {path} timed out") from e


class HoldSubscription:
    """The dead-letter hold subscription. Nothing here peeks: a pulled message is leased until
    it is acked (gone for good) or released (ack deadline 0: deliverable again at once)."""

    def __init__(self, subscription_path: str, *, deadline: float = 10.0, wait: float = 2.0):
        self.path = subscription_path
        self._retry = _bounded(deadline)
        self._deadline = deadline
        self._wait = wait
        self._client = pubsub_v1.SubscriberClient()

    def pull(self, max_messages: int) -> list[tuple[str, Inbound]]:
        """(ack id, message) pairs; empty when nothing came within ``wait`` seconds."""
        def call() -> Any:
            try:
                return self._client.pull(subscription=self.path, max_messages=max_messages,
                                         retry=self._retry, timeout=self._wait)
            except gexc.DeadlineExceeded:
                return None

        response = _translated("pull from", self.path, call)
        if response is None:
            return []
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
        for chunk in _chunks(ack_ids):
            _translated("ack on", self.path, partial(
                self._client.acknowledge, subscription=self.path, ack_ids=chunk,
                retry=self._retry, timeout=self._deadline,
            ))

    def release(self, ack_ids: Sequence[str]) -> None:
        for chunk in _chunks(ack_ids):
            _translated("release on", self.path, partial(
                self._client.modify_ack_deadline, subscription=self.path, ack_ids=chunk,
                ack_deadline_seconds=0, retry=self._retry, timeout=self._deadline,
            ))

    def close(self) -> None:
        self._client.close()


class EventsTopic:
    """The events topic, for republishing dead letters one at a time, each confirmed."""

    def __init__(self, topic_path: str, *, deadline: float = 10.0) -> None:
        self.path = topic_path
        self._retry = _bounded(deadline)
        self._deadline = deadline
        self._client = pubsub_v1.PublisherClient()

    def publish(self, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish and wait for Pub/Sub's message id: returning means the message is stored."""
        future = self._client.publish(self.path, data, retry=self._retry,
                                      timeout=self._deadline, **attributes)
        return _translated("publish to", self.path,
                           lambda: str(future.result(timeout=self._deadline * 2)))

    def close(self) -> None:
        self._client.stop()
