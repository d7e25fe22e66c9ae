"""The writer's fast path: right after a commit returns, tombstone the keys its events map to,
at the commit timestamp, so readers stop seeing the old value within a Redis round trip instead
of after the relay and the consumer.

    fast_path = FastPath.from_env()          # or FastPath(redis_client, catalog)
    run_transaction(database, transfer, fast_path=fast_path)

The outbox path stays the guarantee. The tombstones carry the version the outbox event carries,
and go through the same guard, so the consumer's later write of that version is a no-op, a fill
from a snapshot older than the commit is refused, and no version is ever lowered. The fast path
never fails the business transaction: a failure is counted
(``redis_spanner_fast_path_failures_total``) and logged, and the outbox path makes the keys
coherent later. Every template's keys are tombstoned, rewarm templates' too: the consumer's
rewarm then writes the value at its snapshot's version, which is newer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from redis_spanner.producers import metrics
from redis_spanner.producers.outbox import Recorded
from redis_spanner.producers.redis_writer import TombstoneWriter
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import DEFAULT_TOMBSTONE_TTL_SECONDS
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import RedisSpannerError
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.redis_connection import RedisClient
from redis_spanner.schemas.settings import Settings, load_settings, require_catalog

log = logging.getLogger(__name__)


class FastPath:
    """Give it to ``run_transaction(..., fast_path=...)``. ``tombstone_ttl_seconds`` and
    ``max_version_skew_seconds`` should match the consumer's settings (``from_env`` reads the
    same ones)."""

    def __init__(self, client: RedisClient | TombstoneWriter, catalog: Catalog, *,
                 tombstone_ttl_seconds: int = DEFAULT_TOMBSTONE_TTL_SECONDS,
                 max_version_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS) -> None:
        self.writer = client if isinstance(client, TombstoneWriter) else TombstoneWriter(
            client, tombstone_ttl_seconds=tombstone_ttl_seconds,
            max_version_skew_seconds=max_version_skew_seconds)
        self.catalog = catalog
        self._owns_client = False

    @classmethod
    def from_env(cls) -> FastPath:
        """``REDIS_URL`` and the other Redis settings (cluster, TLS, ACL username, password
        file), the catalog, namespace and TTL settings, all as the consumer reads them."""
        return cls.from_settings(load_settings())

    @classmethod
    def from_settings(cls, settings: Settings) -> FastPath:
        built = cls(TombstoneWriter.from_settings(settings), require_catalog(settings))
        built._owns_client = True
        return built

    def __repr__(self) -> str:
        return f"FastPath({self.writer!r}, namespace={self.catalog.namespace!r})"

    def after_commit(self, events: Sequence[Recorded], committed: Any) -> None:
        """Tombstone the events' keys at ``committed``. Never raises."""
        try:
            version = versions.from_datetime(committed)
            keys = tombstone_keys(self.catalog, events, version)
            written = self.writer.write(keys, version)
        except Exception as e:  # the transaction committed: nothing may undo that for the caller
            failed(e, len(events))
            return
        count(written)

    def close(self) -> None:
        """Close the client ``from_env``/``from_settings`` built; a client given is the
        caller's to close."""
        if self._owns_client:
            self.writer.close()


def tombstone_keys(catalog: Catalog, events: Iterable[Recorded], version: int) -> list[str]:
    """The keys the events map to, each once. An event the catalog refuses is left to the
    outbox path, which dead-letters it with its reason."""
    keys: dict[str, None] = {}
    for recorded in events:
        try:
            event = Event(recorded.event_id, recorded.event_type, recorded.table, recorded.key,
                          version)
            keys.update((t.cache_key.key, None) for t in catalog.targets(event))
        except RedisSpannerError as e:
            log.debug("fast path skips event %s: %s", recorded.event_id, e)
    return list(keys)


def count(written: Sequence[bool]) -> None:
    applied = sum(written)
    metrics.FAST_PATH_TOMBSTONES.labels("written").inc(applied)
    metrics.FAST_PATH_TOMBSTONES.labels("refused").inc(len(written) - applied)


def failed(error: Exception, events: int) -> None:
    metrics.FAST_PATH_FAILURES.inc()
    log.warning("fast path failed for %d event(s), the outbox path will apply them: %s",
                events, error if isinstance(error, RedisSpannerError) else type(error).__name__)
