"""Build a relay from settings: the one place the relays' adapters are wired together."""

from __future__ import annotations

from collections.abc import Callable

from redis_spanner.producers.changestream import ChangeMessage
from redis_spanner.producers.changestream_query import ChangeStreamQuery
from redis_spanner.producers.changestream_reader import ChangeStreamRelay, ReaderConfig
from redis_spanner.producers.outbox_store import OutboxRow, SpannerOutbox
from redis_spanner.producers.partition_store import SpannerPartitions
from redis_spanner.producers.publisher import PubSubPublisher
from redis_spanner.producers.relay import Relay, RelayConfig
from redis_spanner.producers.spanner import open_database
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.settings import Settings


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
