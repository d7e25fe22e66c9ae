"""The read-through client for asyncio services.

``AsyncCacheClient`` runs the same read-through as ``CacheClient``
(``redis_spanner.consumers.read_flow``: guarded fills, fill leases, ``verify=True``, slow fills,
foreign entries) with ``redis.asyncio`` for Redis and Spanner reads in a thread executor, since
google-cloud-spanner has no asyncio API.

    async with AsyncCacheClient.from_env() as client:
        account = await client.get("account", "a-1")
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol

from redis_spanner.consumers import field_crypto
from redis_spanner.consumers.read_flow import Read, get_many
from redis_spanner.consumers.read_requests import (
    AcquireLeases,
    RawEntries,
    ReadRows,
    ReadVersions,
    ReleaseLeases,
    Request,
    Sleep,
    Write,
)
from redis_spanner.consumers.readthrough import ReadThroughClient, from_env_parts
from redis_spanner.consumers.redis_cache_async import AsyncRedisCache
from redis_spanner.schemas.cache import Applied, CacheOp
from redis_spanner.schemas.keys import CacheKey
from redis_spanner.schemas.settings import Settings

__all__ = ["AsyncCacheClient", "AsyncLeasingCache"]


class AsyncLeasingCache(Protocol):
    async def raw(self, keys: Sequence[str]) -> list[dict[str, str] | str]: ...
    async def apply(self, ops: Sequence[CacheOp]) -> list[Applied]: ...
    async def acquire_leases(self, lease_keys: Sequence[str], token: str, ttl_ms: int
                             ) -> list[bool]: ...
    async def release_leases(self, lease_keys: Sequence[str], token: str) -> None: ...
    async def aclose(self) -> None: ...


class AsyncCacheClient(ReadThroughClient[AsyncLeasingCache]):
    """Reads cache keys through Redis, falling back to Spanner, without blocking the loop."""

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> AsyncCacheClient:
        """The client the environment describes, as ``CacheClient.from_env`` builds it."""
        settings, catalog, rows, fills = from_env_parts(settings)
        crypto = field_crypto.from_settings(settings, catalog)
        return cls(catalog, AsyncRedisCache.from_settings(settings, crypto), rows, fills=fills)

    async def __aenter__(self) -> AsyncCacheClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()

    async def get(self, template: str, *parts: object, verify: bool = False) -> Any:
        """The value of one key; ``None`` when the row is missing."""
        [read] = await self.get_many([self.key(template, *parts)], verify=verify)
        return read.value

    async def get_many(self, keys: Sequence[CacheKey], *, verify: bool = False) -> list[Read]:
        """One Redis round trip for all keys; one Spanner snapshot for the misses."""
        flow = get_many(keys, verify, self._leases, self._fills)
        answer: Any = None
        error: BaseException | None = None
        while True:
            try:
                request = flow.throw(error) if error is not None else flow.send(answer)
            except StopIteration as done:
                result: list[Read] = done.value
                return result
            try:
                answer, error = await self._do(request), None
            except BaseException as e:  # the flow gives its leases back, then re-raises
                answer, error = None, e

    async def _do(self, request: Request) -> Any:
        match request:
            case RawEntries(keys):
                return await self._cache.raw(keys)
            case ReadRows(keys):
                return await asyncio.to_thread(self._rows.read, keys)
            case ReadVersions(keys):
                return await asyncio.to_thread(self._rows.read_versions, keys)
            case AcquireLeases(lease_keys, token, ttl_ms):
                return await self._cache.acquire_leases(lease_keys, token, ttl_ms)
            case ReleaseLeases(lease_keys, token):
                return await self._cache.release_leases(lease_keys, token)
            case Write(ops, tolerant):
                try:
                    return await self._cache.apply(ops)
                except Exception:  # a foreign entry may get any answer from the guard
                    if tolerant:
                        return None
                    raise
            case Sleep(seconds):
                return await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        await self._cache.aclose()
