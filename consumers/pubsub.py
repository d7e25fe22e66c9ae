"""The consumers' one touch point with google-cloud-pubsub: synchronous pull, ack and nack for
the worker and the dead-letter tools, the dead-letter publisher, and republishing to the events
topic.

The worker's calls retry for at most ``WORKER_CALL_SECONDS`` (the client's defaults retry for a
minute, longer than a stop may take) and treat every API failure as transient: its loop backs
off and pulls again. The dead-letter tools bound every call in time (the client's
default retries run for a minute), so an outage becomes an error within ``deadline`` seconds
instead of a silent wait. Only calls that exist on real Pub/Sub and on the emulator alike are
used: synchronous pull, acknowledge, modify_ack_deadline, publish.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from importlib import metadata
from typing import Any, TypeVar

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core.gapic_v1.method import DEFAULT
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.pubsub_v1 import types as gapic
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport
from redis_spanner.consumers.messages import Inbound
from redis_spanner.consumers.redaction import Sensitive, redacted
from redis_spanner.schemas.errors import PermanentError, TransientError

T = TypeVar("T")
DEAD_LETTER_PREFIX = "dl_"
FORWARDED_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"
FORWARDED_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
"""Set by Pub/Sub on a message its dead-letter policy forwards: when it was first published,
and how many times it was delivered before Pub/Sub gave up."""
ACK_CHUNK = 1000
UNLIMITED_MESSAGES = [("grpc.max_receive_message_length", -1),
                      ("grpc.max_send_message_length", -1)]
WORKER_CALL_SECONDS = 5.0
_RETRIED = gretry.if_exception_type(
    gexc.ServiceUnavailable, gexc.InternalServerError, gexc.Aborted, gexc.Unknown,
)


def consumer_version() -> str:
    try:
        return metadata.version("redis-spanner")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- calls: bounds and error translation -------------------------------------------------


def _bounded(deadline: float) -> gretry.Retry:
    return gretry.Retry(initial=0.1, maximum=2.0, multiplier=2.0, predicate=_RETRIED,
                        timeout=deadline)


def _translated(what: str, path: str, fn: Callable[[], T]) -> T:
    """A bounded call's failure: permanent when the resource is missing or forbidden."""
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


def _transient(what: str, fn: Callable[[], T]) -> T:
    """A worker call's failure: always transient, the worker's loop tries again."""
    try:
        return fn()
    except (gexc.GoogleAPIError, TimeoutError) as e:  # API errors and the client giving up
        raise TransientError(f"pubsub {what} failed: {type(e).__name__}") from e


# Requests built as protobufs and wrapped: given keyword arguments, the client converts every
# ack id through proto-plus, which cost more CPU than the rest of an acknowledge call.
_ACK_REQUEST: Any = gapic.AcknowledgeRequest
_RAW_ACK_REQUEST: Any = gapic.AcknowledgeRequest.pb()
_DEADLINE_REQUEST: Any = gapic.ModifyAckDeadlineRequest
_RAW_DEADLINE_REQUEST: Any = gapic.ModifyAckDeadlineRequest.pb()


def _chunks(ack_ids: Sequence[str]) -> Iterator[list[str]]:
    """Pub/Sub caps a request's size: ack or release at most ``ACK_CHUNK`` ids per call."""
    for start in range(0, len(ack_ids), ACK_CHUNK):
        yield list(ack_ids[start:start + ACK_CHUNK])


def _inbound(received: Any) -> tuple[str, Inbound]:
    """One received message, read from the raw protobuf: the proto-plus wrappers cost more per
    field than the rest of the worker's work per message. Its attributes stay the protobuf's
    own mapping, read only: copying them into a dict cost half of this function."""
    message = received.message
    stamp = message.publish_time
    return received.ack_id, Inbound(
        message_id=message.message_id,
        data=message.data,
        attributes=message.attributes,
        delivery_attempt=received.delivery_attempt,
        publish_time=stamp.seconds + stamp.nanos / 1e9,
    )


# --- subscriptions -----------------------------------------------------------------------


class PullSubscription:
    """Synchronous pull: a whole batch per call, so the core writes Redis once per batch.

    With a ``deadline`` every call gives up after that many seconds, and a subscription that
    does not exist or may not be read is a ``PermanentError``; without one every call gives up
    after ``WORKER_CALL_SECONDS`` and every failure is a ``TransientError``.
    """

    def __init__(self, subscription_path: str, *, max_messages: int = 500,
                 deadline: float | None = None, wait: float = 5.0) -> None:
        self.path = subscription_path
        self._max = max_messages
        self._deadline = deadline
        self._wait = wait
        self._retry: Any = _bounded(WORKER_CALL_SECONDS if deadline is None else deadline)
        self._timeout: Any = WORKER_CALL_SECONDS if deadline is None else deadline
        self._client = self._new_client()

    @staticmethod
    def _new_client() -> Any:
        return pubsub_v1.SubscriberClient()

    def pull(self, timeout: float | None = None,
             max_messages: int | None = None) -> list[tuple[str, Inbound]]:
        """(ack id, message) pairs; an empty list when nothing arrived within ``timeout``
        seconds (``wait`` when not given)."""
        def call() -> Any:
            try:
                return self._client.pull(
                    subscription=self.path,
                    max_messages=self._max if max_messages is None else max_messages,
                    retry=self._retry, timeout=self._wait if timeout is None else timeout,
                )
            except gexc.DeadlineExceeded:
                return None

        response = self._call("pull", "pull from", call)
        if response is None:
            return []
        return [_inbound(r) for r in type(response).pb(response).received_messages]

    def ack(self, ack_ids: Sequence[str]) -> None:
        for chunk in _chunks(ack_ids):
            request = _ACK_REQUEST.wrap(_RAW_ACK_REQUEST(subscription=self.path, ack_ids=chunk))
            self._call("ack/nack", "ack on", partial(
                self._client.acknowledge, request=request, retry=self._retry,
                timeout=self._timeout,
            ))

    def nack(self, ack_ids: Sequence[str]) -> None:
        """Ask for redelivery now (ack deadline 0); the subscription's retry policy paces it."""
        for chunk in _chunks(ack_ids):
            request = _DEADLINE_REQUEST.wrap(_RAW_DEADLINE_REQUEST(
                subscription=self.path, ack_ids=chunk, ack_deadline_seconds=0))
            self._call("ack/nack", "release on", partial(
                self._client.modify_ack_deadline, request=request, retry=self._retry,
                timeout=self._timeout,
            ))

    def _call(self, short: str, what: str, fn: Callable[[], T]) -> T:
        """``fn`` with its failure translated: named ``short`` without a deadline, else
        ``what`` and the subscription's path."""
        if self._deadline is None:
            return _transient(short, fn)
        return _translated(what, self.path, fn)

    def close(self) -> None:
        self._client.close()


class HoldSubscription(PullSubscription):
    """The dead-letter hold subscription, for the dead-letter tools. Nothing here peeks: a
    pulled message is leased until it is acked (gone for good) or released (ack deadline 0:
    deliverable again at once)."""

    def __init__(self, subscription_path: str, *, deadline: float = 10.0,
                 wait: float = 2.0) -> None:
        super().__init__(subscription_path, deadline=deadline, wait=wait)

    @staticmethod
    def _new_client() -> Any:
        """On the emulator the client's channel keeps gRPC's 4 MiB receive limit, so one pull
        holding a large dead letter would fail every time: lift it, as the client does for
        real Pub/Sub."""
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        if not emulator:
            return pubsub_v1.SubscriberClient()
        channel = grpc.insecure_channel(emulator, options=UNLIMITED_MESSAGES)
        return pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=channel, host=emulator))

    def release(self, ack_ids: Sequence[str]) -> None:
        self.nack(ack_ids)


# --- publishing --------------------------------------------------------------------------


def _published(client: Any, topic_path: str, data: bytes, attributes: Mapping[str, str], *,
               wait: float, retry: Any = DEFAULT, timeout: Any = DEFAULT) -> str:
    """Publish and wait up to ``wait`` seconds for Pub/Sub's message id: returning means the
    message is stored."""
    future = client.publish(topic_path, data, retry=retry, timeout=timeout, **attributes)
    return str(future.result(timeout=wait))


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")


class DeadLetterPublisher:
    """Publishes a message that can never succeed to the dead-letter topic, with its story."""

    def __init__(self, topic_path: str, source_subscription: str, *, timeout: float = 30.0,
                 redact: Sensitive | None = None):
        self._topic = topic_path
        self._source = source_subscription
        self._timeout = timeout
        self._redact = redact
        """Sensitive columns by table: dropped from the payload of what is dead-lettered."""
        self._client = pubsub_v1.PublisherClient()

    def send(self, message: Inbound, error: PermanentError, *, source: str | None = None,
             attempts: int | None = None) -> None:
        """``source`` and ``attempts`` stand in for the subscription this publisher was made
        for and the message's delivery attempt."""
        attributes = {k: v for k, v in message.attributes.items()
                      if not k.startswith(DEAD_LETTER_PREFIX)}
        attempts = message.delivery_attempt if attempts is None else attempts
        first_failure = (
            message.attributes.get(DEAD_LETTER_PREFIX + "first_failure_time")
            or message.attributes.get(FORWARDED_PUBLISH_TIME)
            or (_iso(message.publish_time) if attempts > 1 and message.publish_time
                else _iso(dt.datetime.now(dt.UTC).timestamp()))
        )
        attributes.update({
            DEAD_LETTER_PREFIX + "reason": error.reason,
            DEAD_LETTER_PREFIX + "error_class": type(error).__name__,
            DEAD_LETTER_PREFIX + "error": str(error)[:1024],
            DEAD_LETTER_PREFIX + "source_subscription": source or self._source,
            DEAD_LETTER_PREFIX + "delivery_attempts": str(max(attempts, 1)),
            DEAD_LETTER_PREFIX + "first_failure_time": first_failure,
            DEAD_LETTER_PREFIX + "consumer_version": consumer_version(),
            DEAD_LETTER_PREFIX + "original_message_id": message.message_id,
        })
        try:
            _published(self._client, self._topic, redacted(message.data, self._redact),
                       attributes,
                       wait=self._timeout)
        except Exception as e:
            raise TransientError(f"dead-letter publish failed: {type(e).__name__}") from e

    def close(self) -> None:
        self._client.stop()


class EventsTopic:
    """A topic to republish to one message at a time, each confirmed: the events topic for
    dead letters replayed, the heal topic for letters still healing. Every call gives up after
    ``deadline`` seconds."""

    def __init__(self, topic_path: str, *, deadline: float = 10.0) -> None:
        self.path = topic_path
        self._retry = _bounded(deadline)
        self._deadline = deadline
        self._client = pubsub_v1.PublisherClient()

    def publish(self, data: bytes, attributes: Mapping[str, str]) -> str:
        """Publish and wait for Pub/Sub's message id: returning means the message is stored."""
        return _translated("publish to", self.path, partial(
            _published, self._client, self.path, data, attributes, wait=self._deadline * 2,
            retry=self._retry, timeout=self._deadline,
        ))

    def close(self) -> None:
        self._client.stop()
