"""Build a relay from settings: the one place the relay's adapters are wired together."""

from __future__ import annotations

from collections.abc import Callable

from redis_spanner.producers.outbox_store import OutboxRow, SpannerOutbox
from redis_spanner.producers.publisher import PubSubPublisher
from redis_spanner.producers.relay import Relay, RelayConfig
from redis_spanner.producers.spanner import open_database
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
