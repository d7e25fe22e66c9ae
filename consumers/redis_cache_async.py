"""The asyncio read-through's one touch point with redis-py (``redis.asyncio``): the entry
reads, guarded fills and fill leases that ``RedisCache`` does with blocking calls."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis_spanner.consumers.redis_cache import guard_answers, guard_calls
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import GUARD, LEASE_RELEASE, Applied, CacheOp
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.settings import Settings, redacted_url


class AsyncRedisCache:
    def __init__(self, client: aioredis.Redis, *, cache_ttl_seconds: int,
                 tombstone_ttl_seconds: int,
                 max_version_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS,
                 where: str = "redis") -> None:
        self.client = client
        self._max_skew_seconds = max_version_skew_seconds
        self._value_ttl_ms = cache_ttl_seconds * 1000
        self._tombstone_ttl_ms = tombstone_ttl_seconds * 1000
        self._where = where

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncRedisCache:
        url = settings.require_redis_url()
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
            health_check_interval=30,
        )
        return cls(client, cache_ttl_seconds=settings.cache_ttl_seconds,
                   tombstone_ttl_seconds=settings.tombstone_ttl_seconds,
                   max_version_skew_seconds=settings.max_version_skew_seconds,
                   where=redacted_url(url))

    def __repr__(self) -> str:
        return f"AsyncRedisCache({self._where})"

    async def raw(self, keys: Sequence[str]) -> list[dict[str, str] | str]:
        """The hash fields at each key (empty where nothing is stored); for a key that holds
        another Redis type, the name of that type."""
        if not keys:
            return []
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            replies = list(await pipe.execute(raise_on_error=False))
            return [
                str(await self.client.type(key)) if isinstance(reply, ResponseError) else reply
                for key, reply in zip(keys, replies, strict=True)
            ]
        except RedisError as e:
            raise self._unavailable(e) from e

    async def apply(self, ops: Sequence[CacheOp]) -> list[Applied]:
        """Run every op through the guard in one round trip, as ``RedisCache.apply`` does.
        Raises ``TransientError``."""
        calls = guard_calls(ops, value_ttl_ms=self._value_ttl_ms,
                            tombstone_ttl_ms=self._tombstone_ttl_ms,
                            ceiling=versions.ceiling(self._max_skew_seconds))
        return guard_answers(ops, await self._scripted(GUARD, calls))

    async def acquire_leases(self, lease_keys: Sequence[str], token: str,
                             ttl_ms: int) -> list[bool]:
        """Try to take a short fill lease per key (SET NX PX), in one round trip."""
        if not lease_keys:
            return []
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in lease_keys:
                pipe.set(key, token, nx=True, px=ttl_ms)
            return [bool(r) for r in await pipe.execute()]
        except RedisError as e:
            raise self._unavailable(e) from e

    async def release_leases(self, lease_keys: Sequence[str], token: str) -> None:
        """Give back the leases this token still holds; an expired one is left alone."""
        await self._scripted(LEASE_RELEASE, [(key, token) for key in lease_keys])

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _scripted(self, script: str, calls: Sequence[tuple[str | int, ...]]) -> list[Any]:
        """One pipeline of single-key EVALSHA calls; loads the script if Redis lost it."""
        if not calls:
            return []
        sha = _sha1(script)
        try:
            replies = await self._evalsha(sha, calls)
            if any(isinstance(r, NoScriptError) for r in replies):
                await self.client.script_load(script)
                replies = await self._evalsha(sha, calls)
        except RedisError as e:
            raise self._unavailable(e) from e
        for reply in replies:
            if isinstance(reply, Exception):
                raise TransientError(f"redis refused a write: {reply}") from reply
        return replies

    async def _evalsha(self, sha: str, calls: Sequence[tuple[str | int, ...]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for key, *args in calls:
            pipe.evalsha(sha, 1, key, *args)
        return list(await pipe.execute(raise_on_error=False))

    def _unavailable(self, e: Exception) -> TransientError:
        return TransientError(f"redis unavailable ({self._where}): {type(e).__name__}")


@functools.cache
def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()
