"""The fast path for asyncio services: ``AsyncFastPath`` writes its tombstones through
``redis.asyncio``, and ``run_transaction_async`` runs the (blocking) Spanner transaction in a
worker thread, then awaits the tombstones.

    fast_path = AsyncFastPath.from_env()
    result, committed = await run_transaction_async(database, transfer, fast_path=fast_path)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis_spanner.producers.fast_path import count, failed, tombstone_keys
from redis_spanner.producers.outbox import Recorded
from redis_spanner.producers.redis_writer import AsyncTombstoneWriter
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import DEFAULT_TOMBSTONE_TTL_SECONDS
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.redis_connection import AsyncRedisClient
from redis_spanner.schemas.settings import Settings, load_settings, require_catalog

T = TypeVar("T")


class AsyncFastPath:
    """``FastPath``'s asyncio twin: the same keys, versions, guard and failure handling."""

    def __init__(self, client: AsyncRedisClient | AsyncTombstoneWriter, catalog: Catalog, *,
                 tombstone_ttl_seconds: int = DEFAULT_TOMBSTONE_TTL_SECONDS,
                 max_version_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS) -> None:
        self.writer = client if isinstance(client, AsyncTombstoneWriter) else AsyncTombstoneWriter(
            client, tombstone_ttl_seconds=tombstone_ttl_seconds,
            max_version_skew_seconds=max_version_skew_seconds)
        self.catalog = catalog
        self._owns_client = False

    @classmethod
    def from_env(cls) -> AsyncFastPath:
        """As ``FastPath.from_env``: the consumer's Redis, catalog and TTL settings."""
        return cls.from_settings(load_settings())

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncFastPath:
        built = cls(AsyncTombstoneWriter.from_settings(settings), require_catalog(settings))
        built._owns_client = True
        return built

    def __repr__(self) -> str:
        return f"AsyncFastPath({self.writer!r}, namespace={self.catalog.namespace!r})"

    async def after_commit(self, events: Sequence[Recorded], committed: Any) -> None:
        """Tombstone the events' keys at ``committed``. Never raises."""
        try:
            version = versions.from_datetime(committed)
            keys = tombstone_keys(self.catalog, events, version)
            written = await self.writer.write(keys, version)
        except Exception as e:  # the transaction committed: nothing may undo that for the caller
            failed(e, len(events))
            return
        count(written)

    async def aclose(self) -> None:
        """Close the client ``from_env``/``from_settings`` built; a client given is the
        caller's to close."""
        if self._owns_client:
            await self.writer.client.aclose()


class _Collect:
    events: Sequence[Recorded] = ()

    def after_commit(self, events: Sequence[Recorded], committed: Any) -> None:
        self.events = list(events)


async def run_transaction_async(
    database: Any,
    work: Callable[[Any], T],
    *,
    attempts: int = 30,
    seconds: float = 30.0,
    fast_path: AsyncFastPath | None = None,
) -> tuple[T, Any]:
    """``run_transaction`` in a worker thread (``work`` runs there too), then the fast path's
    tombstones on this event loop. Returns the work's result and the commit timestamp."""
    collect = _Collect()
    result, committed = await asyncio.to_thread(
        run_transaction, database, work, attempts=attempts, seconds=seconds,
        fast_path=collect if fast_path is not None else None)
    if fast_path is not None:
        await fast_path.after_commit(collect.events, committed)
    return result, committed
