"""The asyncio read-through's one touch point with redis-py (``redis.asyncio``): the entry
reads, guarded fills and fill leases that ``RedisCache`` does with blocking calls."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis import asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis_spanner.consumers.redis_cache import guard_answers, guard_calls
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import GUARD, LEASE_RELEASE, Applied, CacheOp
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.redis_connection import connect_async
from redis_spanner.schemas.settings import Settings, redacted_url

if TYPE_CHECKING:
    from redis_spanner.consumers.field_crypto import FieldCrypto


class AsyncRedisCache:
    def __init__(self, client: aioredis.Redis | aioredis.RedisCluster, *, cache_ttl_seconds: int,
                 tombstone_ttl_seconds: int,
                 max_version_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS,
                 where: str = "redis", crypto: FieldCrypto | None = None) -> None:
        self.client = client
        self._crypto = crypto
        self._max_skew_seconds = max_version_skew_seconds
        self._value_ttl_ms = cache_ttl_seconds * 1000
        self._tombstone_ttl_ms = tombstone_ttl_seconds * 1000
        self._where = where

    @classmethod
    def from_settings(cls, settings: Settings,
                      crypto: FieldCrypto | None = None) -> AsyncRedisCache:
        return cls(connect_async(settings), cache_ttl_seconds=settings.cache_ttl_seconds,
                   tombstone_ttl_seconds=settings.tombstone_ttl_seconds,
                   max_version_skew_seconds=settings.max_version_skew_seconds,
                   where=redacted_url(settings.require_redis_url()), crypto=crypto)

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
            found: list[dict[str, str] | str] = [
                str(await self.client.type(key)) if isinstance(reply, ResponseError) else reply
                for key, reply in zip(keys, replies, strict=True)
            ]
            if self._crypto is not None:
                found = [self._crypto.open_fields(k, f) for k, f in zip(keys, found, strict=True)]
            return found
        except RedisError as e:
            raise self._unavailable(e) from e

    async def apply(self, ops: Sequence[CacheOp]) -> list[Applied]:
        """Run every op through the guard in one round trip, as ``RedisCache.apply`` does.
        Raises ``TransientError``."""
        stored = ops if self._crypto is None else self._crypto.seal_ops(ops)
        calls = guard_calls(stored, value_ttl_ms=self._value_ttl_ms,
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
        if isinstance(self.client, aioredis.RedisCluster):
            # The cluster pipeline refuses scripts: each single-key call goes to its own node,
            # all of them at once.
            return list(await asyncio.gather(
                *(self.client.evalsha(sha, 1, key, *args) for key, *args in calls),
                return_exceptions=True))
        pipe = self.client.pipeline(transaction=False)
        for key, *args in calls:
            pipe.evalsha(sha, 1, key, *args)
        return list(await pipe.execute(raise_on_error=False))

    def _unavailable(self, e: Exception) -> TransientError:
        return TransientError(f"redis unavailable ({self._where}): {type(e).__name__}")


@functools.cache
def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()
