"""The producers' one touch point with redis-py: the fast path's guarded tombstones, written
with a blocking client or a ``redis.asyncio`` one.

Every tombstone goes through ``GUARD``, the script the consumer writes with, so the fast path
keeps the same rules: it never lowers a version, a tie is refused, and a fill from an older
snapshot arriving later is refused. The tombstones of one commit go out as one pipeline of
EVALSHA calls (one round trip); a server that lost its script cache gets the script and the
batch again, which is harmless since the guard is idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis
from redis import asyncio as aioredis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import GUARD, OP_INVALIDATE
from redis_spanner.schemas.errors import ConfigError, TransientError
from redis_spanner.schemas.settings import Settings, redacted_url

GUARD_SHA = hashlib.sha1(GUARD.encode()).hexdigest()
_ERRORS = (RedisError, RedisClusterException)
_UNSUPPORTED = {  # settings the producer's own client does not read, by field
    "redis_cluster": "REDIS_SPANNER_REDIS_CLUSTER",
    "redis_ca_file": "REDIS_SPANNER_REDIS_CA_FILE",
    "redis_cert_file": "REDIS_SPANNER_REDIS_CERT_FILE",
    "redis_key_file": "REDIS_SPANNER_REDIS_KEY_FILE",
    "redis_password_file": "REDIS_SPANNER_REDIS_PASSWORD_FILE",
}


def client_options(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The URL and redis-py options for the fast path's client. Refuses (``ConfigError``) the
    settings it does not honour, rather than connect in a way the service did not ask for."""
    chosen = [name for field, name in _UNSUPPORTED.items() if getattr(settings, field)]
    if chosen:
        raise ConfigError(f"the fast path's from_env() does not read {', '.join(chosen)}: "
                          "build the redis client yourself and pass it to FastPath(client, "
                          "catalog)")
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }
    if settings.redis_username is not None:
        options["username"] = settings.redis_username
    return settings.require_redis_url(), options


class TombstoneWriter:
    """Guarded tombstones through a blocking redis-py client."""

    def __init__(self, client: redis.Redis | RedisCluster, *, tombstone_ttl_seconds: int,
                 max_version_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS,
                 where: str = "redis") -> None:
        self.client = client
        self._ttl_ms = tombstone_ttl_seconds * 1000
        self._max_skew_seconds = max_version_skew_seconds
        self._where = where

    @classmethod
    def from_settings(cls, settings: Settings) -> TombstoneWriter:
        url, options = client_options(settings)
        return cls(redis.Redis.from_url(url, **options),
                   tombstone_ttl_seconds=settings.tombstone_ttl_seconds,
                   max_version_skew_seconds=settings.max_version_skew_seconds,
                   where=redacted_url(url))

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
        except _ERRORS as e:
            raise unavailable(self._where, e) from e
        return answers(replies)

    def _run(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))


class AsyncTombstoneWriter:
    """Guarded tombstones through a ``redis.asyncio`` client: ``TombstoneWriter``'s twin."""

    def __init__(self, client: aioredis.Redis | aioredis.RedisCluster, *,
                 tombstone_ttl_seconds: int,
                 max_version_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS,
                 where: str = "redis") -> None:
        self.client = client
        self._ttl_ms = tombstone_ttl_seconds * 1000
        self._max_skew_seconds = max_version_skew_seconds
        self._where = where

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncTombstoneWriter:
        url, options = client_options(settings)
        return cls(aioredis.Redis.from_url(url, **options),
                   tombstone_ttl_seconds=settings.tombstone_ttl_seconds,
                   max_version_skew_seconds=settings.max_version_skew_seconds,
                   where=redacted_url(url))

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
        except _ERRORS as e:
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


def unavailable(where: str, error: Exception) -> TransientError:
    return TransientError(f"redis unavailable ({where}): {type(error).__name__}")
