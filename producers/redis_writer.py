"""The producers' one touch point with redis-py: the fast path's guarded tombstones, written
with a blocking client or a ``redis.asyncio`` one.

Every tombstone goes through ``GUARD``, the script the consumer writes with, so the fast path
keeps the same rules: it never lowers a version, a tie is refused, and a fill from an older
snapshot arriving later is refused. The tombstones of one commit go out as one pipeline of
EVALSHA calls (one round trip); a server that lost its script cache gets the script and the
batch again, which is harmless since the guard is idempotent.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import GUARD, OP_INVALIDATE
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.redis_connection import (
    REDIS_ERRORS,
    AsyncRedisClient,
    RedisClient,
    connect,
    connect_async,
    unavailable,
)
from redis_spanner.schemas.settings import Settings, redacted_url

log = logging.getLogger(__name__)
GUARD_SHA = hashlib.sha1(GUARD.encode()).hexdigest()


class TombstoneWriter:
    """Guarded tombstones through a blocking redis-py client. Given no client,
    ``make_client`` makes one at the first write (and again at each write until it succeeds)."""

    def __init__(self, client: RedisClient | None, *, tombstone_ttl_seconds: int,
                 max_version_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS,
                 where: str = "redis",
                 make_client: Callable[[], RedisClient] | None = None) -> None:
        self._client = client
        self._make_client = make_client
        self._ttl_ms = tombstone_ttl_seconds * 1000
        self._max_skew_seconds = max_version_skew_seconds
        self._where = where

    @classmethod
    def from_settings(cls, settings: Settings) -> TombstoneWriter:
        """A client built as the consumer builds its own (``schemas.redis_connection``): the
        same URL, cluster, TLS and credential settings. Settings that can't work raise
        ``ConfigError``; a cluster that does not answer yet (its client reads the slot map
        when built) is connected to at the first write instead, so a Redis outage never stops
        the writer from starting."""
        try:
            client: RedisClient | None = connect(settings)
        except TransientError as e:
            log.warning("fast path: %s; connecting at the first write", e)
            client = None
        return cls(client, tombstone_ttl_seconds=settings.tombstone_ttl_seconds,
                   max_version_skew_seconds=settings.max_version_skew_seconds,
                   where=redacted_url(settings.require_redis_url()),
                   make_client=functools.partial(connect, settings))

    @property
    def client(self) -> RedisClient:
        """The redis-py client, connected now if it was not yet. Raises ``TransientError``."""
        if self._client is None:
            if self._make_client is None:
                raise TransientError(f"redis unavailable ({self._where}): no client given")
            self._client = self._make_client()
        return self._client

    def close(self) -> None:
        """Close the client, if it was ever connected."""
        if self._client is not None:
            self._client.close()

    def __repr__(self) -> str:
        return f"TombstoneWriter({self._where})"

    def write(self, keys: Sequence[str], version: int) -> list[bool]:
        """Tombstone ``keys`` at ``version`` in one round trip; whether each was written (False:
        the key already holds this version or a newer one). Raises ``TransientError``."""
        if not keys:
            return []
        commands = calls(keys, version, self._ttl_ms, self._max_skew_seconds)
        try:
            replies = self._run(commands)
            if any(isinstance(r, NoScriptError) for r in replies):
                self.client.script_load(GUARD)
                replies = self._run(commands)
        except REDIS_ERRORS as e:
            raise unavailable(self._where, e) from e
        return answers(replies)

    def _run(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))


class AsyncTombstoneWriter:
    """Guarded tombstones through a ``redis.asyncio`` client: ``TombstoneWriter``'s twin."""

    def __init__(self, client: AsyncRedisClient, *, tombstone_ttl_seconds: int,
                 max_version_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS,
                 where: str = "redis") -> None:
        self.client = client
        self._ttl_ms = tombstone_ttl_seconds * 1000
        self._max_skew_seconds = max_version_skew_seconds
        self._where = where

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncTombstoneWriter:
        """As ``TombstoneWriter.from_settings``; the asyncio clients connect on first use."""
        return cls(connect_async(settings), tombstone_ttl_seconds=settings.tombstone_ttl_seconds,
                   max_version_skew_seconds=settings.max_version_skew_seconds,
                   where=redacted_url(settings.require_redis_url()))

    def __repr__(self) -> str:
        return f"AsyncTombstoneWriter({self._where})"

    async def write(self, keys: Sequence[str], version: int) -> list[bool]:
        """As ``TombstoneWriter.write``."""
        if not keys:
            return []
        commands = calls(keys, version, self._ttl_ms, self._max_skew_seconds)
        try:
            replies = await self._run(commands)
            if any(isinstance(r, NoScriptError) for r in replies):
                await self.client.script_load(GUARD)
                replies = await self._run(commands)
        except REDIS_ERRORS as e:
            raise unavailable(self._where, e) from e
        return answers(replies)

    async def _run(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))


def calls(keys: Sequence[str], version: int, ttl_ms: int,
          max_skew_seconds: float) -> list[tuple[Any, ...]]:
    """One ``EVALSHA GUARD`` tombstone per key, with the consumer's arguments."""
    at = versions.encode(version)
    top = versions.encode(versions.ceiling(max_skew_seconds))
    return [("EVALSHA", GUARD_SHA, 1, key, OP_INVALIDATE, at, "", ttl_ms, top) for key in keys]


def answers(replies: Sequence[Any]) -> list[bool]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise TransientError(f"redis refused a tombstone: {type(reply).__name__}") from reply
    return [bool(int(reply[0])) for reply in replies]

