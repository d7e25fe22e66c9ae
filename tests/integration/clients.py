"""Both read-through clients behind one blocking interface, so one suite tests them both.

``AsyncCacheClient`` runs on an event loop in a thread of its own; its facade submits each call
to that loop, so calls from several test threads run concurrently on the one loop, as the
coroutines of an asyncio service would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from redis_spanner.consumers.read_flow import FillPolicy, LeasePolicy, Read
from redis_spanner.consumers.readthrough import CacheClient, VersionReader
from redis_spanner.consumers.readthrough_async import AsyncCacheClient
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.redis_cache_async import AsyncRedisCache
from redis_spanner.schemas.keys import CacheKey, Catalog
from redis_spanner.schemas.settings import Settings

T = TypeVar("T")
KINDS = ("sync", "async")


class Client(Protocol):
    def get(self, template: str, *parts: object, verify: bool = False) -> Any: ...
    def get_many(self, keys: Sequence[CacheKey], *, verify: bool = False) -> list[Read]: ...


class EventLoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Blocking:
    """An ``AsyncCacheClient`` called as if it blocked."""

    def __init__(self, client: AsyncCacheClient, loop: EventLoopThread) -> None:
        self._client = client
        self._loop = loop

    def get(self, template: str, *parts: object, verify: bool = False) -> Any:
        return self._loop.run(self._client.get(template, *parts, verify=verify))

    def get_many(self, keys: Sequence[CacheKey], *, verify: bool = False) -> list[Read]:
        return self._loop.run(self._client.get_many(keys, verify=verify))


class Clients:
    """Builds clients of one kind on real Redis; ``close()`` closes every one it built."""

    def __init__(self, kind: str, settings: Settings, catalog: Catalog) -> None:
        self.kind = kind
        self._settings = settings
        self._catalog = catalog
        self._loop = EventLoopThread() if kind == "async" else None
        self._built: list[Any] = []

    def __call__(self, rows: VersionReader, *, leases: LeasePolicy | None = None,
                 fills: FillPolicy | None = None) -> Client:
        if self._loop is None:
            client = CacheClient(self._catalog, RedisCache.from_settings(self._settings), rows,
                                 leases, fills)
            self._built.append(client)
            return client
        built = AsyncCacheClient(self._catalog, AsyncRedisCache.from_settings(self._settings),
                                 rows, leases, fills)
        self._built.append(built)
        return Blocking(built, self._loop)

    def close(self) -> None:
        for client in self._built:
            if self._loop is not None:
                self._loop.run(client.aclose())
            else:
                client.close()
        if self._loop is not None:
            self._loop.close()
