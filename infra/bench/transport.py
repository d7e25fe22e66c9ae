"""The transport's own limits on this emulator, with no work in between: pull and ack, publish,
and the latency from publish to receive."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.pubsub_v1.types import PubsubMessage
from redis_spanner.consumers.acks import AckSender
from redis_spanner.consumers.pubsub import PullSubscription
from redis_spanner.infra.bench.stack import Counter, Rate, account_id, publish_events, timed
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.settings import Settings

_EVENT = Event(str(uuid.uuid4()), EventType.ROW_CHANGED, "Accounts", (account_id(1),),
               time.time_ns())
_PAYLOAD = _EVENT.encode()
_ATTRIBUTES = _EVENT.attributes()
"""What the relay publishes for one outbox row of the bench."""


def raw_pull_ack(settings: Settings, events: int, loops: int, size: int = 1000) -> Rate:
    """Messages per second that ``loops`` loops of pull(``size``) + acknowledge drain, acking
    as the worker does: the ids read straight from the protobuf, and the loops' acks sent
    together by one ``AckSender`` through ``PullSubscription.ack`` (requests built as
    protobufs: proto-plus would cost this more than a third of its rate)."""
    publish_events(settings, events)
    client = pubsub_v1.SubscriberClient()
    acked = Counter(events)
    path = settings.subscription_path
    acks = PullSubscription(path)
    sender = AckSender(acks.ack).start()

    def loop(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                response = client.pull(subscription=path, max_messages=size, timeout=1.0)
            except Exception:  # an empty pull ends in DeadlineExceeded on the emulator
                continue
            ids = [r.ack_id for r in type(response).pb(response).received_messages]
            if ids:
                sender.add(ids)
                acked.add(len(ids))

    def loops_of(stop: threading.Event) -> None:
        threads = [threading.Thread(target=loop, args=(stop,), daemon=True)
                   for _ in range(loops)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    rate = timed(loops_of, acked)
    sender.close(10.0)
    acks.close()
    client.close()
    return rate


def raw_publish(settings: Settings, events: int) -> float:
    """Messages per second Pub/Sub confirms, sent the fastest way this client can: Publish
    requests of 1,000 messages (the most one request takes), 4 in flight, each message as
    large as an outbox row's."""
    client: Any = pubsub_v1.PublisherClient()
    message = PubsubMessage(data=_PAYLOAD, attributes=_ATTRIBUTES)

    def send(start: int) -> None:
        client.api.publish(topic=settings.topic_path,
                           messages=[message] * min(1000, events - start))

    began = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, range(0, events, 1000)))
    elapsed = time.monotonic() - began
    client.stop()
    return events / elapsed


def raw_publish_batched(settings: Settings, events: int) -> float:
    """Messages per second one publisher client gets confirmed through its own batching
    (500 messages or 5 ms), one ``publish`` call per message."""
    client: Any = pubsub_v1.PublisherClient(batch_settings=pubsub_v1.types.BatchSettings(
        max_messages=500, max_latency=0.005))
    began = time.monotonic()
    futures = [client.publish(settings.topic_path, _PAYLOAD, **_ATTRIBUTES)
               for _ in range(events)]
    for future in futures:
        future.result()
    elapsed = time.monotonic() - began
    client.stop()
    return events / elapsed


def floor_lags(settings: Settings, rate: float, seconds: float, mode: str) -> list[float]:
    """Milliseconds from publish to receipt, one message every 1/``rate`` s, received by
    ``mode``: ``pull`` (a synchronous-pull loop, as the worker does) or ``streaming`` (the
    client's streaming-pull callback)."""
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1, max_latency=0.0))
    subscriber = pubsub_v1.SubscriberClient()
    lags: list[float] = []
    lock = threading.Lock()

    def received(data: bytes) -> None:
        with lock:
            lags.append((time.time_ns() - int(data)) / 1e6)

    stop = threading.Event()
    if mode == "streaming":
        def callback(message: Any) -> None:
            received(message.data)
            message.ack()

        future = subscriber.subscribe(settings.subscription_path, callback)
    else:
        def loop() -> None:
            while not stop.is_set():
                try:
                    response = subscriber.pull(subscription=settings.subscription_path,
                                               max_messages=1000, timeout=1.0)
                except Exception:
                    continue
                for r in response.received_messages:
                    received(r.message.data)
                if response.received_messages:
                    subscriber.acknowledge(subscription=settings.subscription_path,
                                           ack_ids=[r.ack_id for r in
                                                    response.received_messages])
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
    time.sleep(0.5)
    sent = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        publisher.publish(settings.topic_path, str(time.time_ns()).encode())
        sent += 1
        time.sleep(max(0.0, began + sent / rate - time.monotonic()))
    deadline = time.monotonic() + 10
    while len(lags) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    if mode == "streaming":
        future.cancel()
        future.result(timeout=10)
    else:
        thread.join(5)
    publisher.stop()
    subscriber.close()
    return lags
