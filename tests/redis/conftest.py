"""Fixtures of the tests of Redis alone: a flushed database of the session's redis-server and
the real adapter over it. Nothing here starts an emulator."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from redis_spanner.consumers.redis_cache import RedisCache

OWN_DB = 13
"""The database index these tests use on the session's redis-server, flushed around each test
(integration tests use index 0 with namespaced keys)."""


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    url = urlsplit(redis_url)._replace(path=f"/{OWN_DB}").geturl()
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_cache(redis_client: redis.Redis) -> RedisCache:
    return RedisCache(redis_client, cache_ttl_seconds=60, tombstone_ttl_seconds=30)
