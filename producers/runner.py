"""Build the relays from settings (the one place their adapters are wired together), and run
the outbox relay as a process runs it: stopped within a bounded time of the stop signal."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from redis_spanner.producers.changestream import ChangeMessage
from redis_spanner.producers.changestream_query import ChangeStreamQuery
from redis_spanner.producers.changestream_reader import ChangeStreamRelay, ReaderConfig
from redis_spanner.producers.outbox_rows import OutboxRow
from redis_spanner.producers.outbox_store import SpannerOutbox
from redis_spanner.producers.partition_store import SpannerPartitions
from redis_spanner.producers.publisher import PubSubPublisher
from redis_spanner.producers.relay import Relay, RelayConfig
from redis_spanner.producers.spanner import open_database
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.settings import Settings

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 4.0
"""How long a stopped relay may take to finish its round and release its leases."""


def build_relay(
    settings: Settings,
    *,
    on_published: Callable[[list[OutboxRow]], None] | None = None,
) -> tuple[Relay, PubSubPublisher]:
    publisher = PubSubPublisher(settings.topic_path)
    relay = Relay(
        SpannerOutbox(open_database(settings)),
        publisher,
        RelayConfig(
            lease_seconds=settings.relay_lease_seconds,
            poll_interval=settings.relay_poll_ms / 1000,
            batch=settings.relay_batch,
        ),
        on_published=on_published,
    )
    return relay, publisher


def run_relay(settings: Settings, stop: threading.Event,
              grace: float = STOP_GRACE_SECONDS) -> bool:
    """Run a relay until ``stop`` is set; raises ``LeaseLost`` if it lost its leases.

    The relay runs in a thread, so the caller's thread keeps answering signals whatever a
    Spanner or Pub/Sub call is waiting for. Returns False if the relay had not finished
    ``grace`` seconds after ``stop``: it is then abandoned mid-call, which is safe, since rows
    are deleted only after Pub/Sub confirmed them, and the caller should exit at once."""
    relay, publisher = build_relay(settings)
    finished = threading.Event()
    failure: list[BaseException] = []

    def loop() -> None:
        try:
            relay.run(stop)
        except BaseException as e:
            failure.append(e)
        finally:
            finished.set()

    threading.Thread(target=loop, daemon=True, name="relay").start()
    while not (stop.is_set() or finished.wait(0.2)):
        pass
    done = finished.wait(grace)
    closer = threading.Thread(target=publisher.close, daemon=True, name="publisher-close")
    closer.start()
    closer.join(timeout=1.0)
    if failure:
        raise failure[0]
    if not done:
        log.warning("relay %s still waiting on a call %.0fs after the stop signal; leaving it "
                    "(nothing unconfirmed was deleted)", relay.owner, grace)
    return done


def build_changestream_relay(
    settings: Settings,
    *,
    on_published: Callable[[list[ChangeMessage]], None] | None = None,
) -> tuple[ChangeStreamRelay, PubSubPublisher]:
    """The change-stream relay over the catalog's tables. Raises ``PermanentError`` when the
    database has no such change stream."""
    database = open_database(settings)
    query = ChangeStreamQuery(database, settings.change_stream)
    query.check()
    config = ReaderConfig(
        tables=load_catalog(settings.catalog, settings.namespace).tables,
        key_order=query.key_order(),
        retention=query.retention(),
        lease_seconds=settings.relay_lease_seconds,
    )
    publisher = PubSubPublisher(settings.topic_path)
    relay = ChangeStreamRelay(query, SpannerPartitions(database, settings.change_stream),
                              publisher, config, on_published=on_published)
    return relay, publisher
