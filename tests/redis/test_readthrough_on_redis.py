"""The read-through client's fault-free paths over the Lua guard and leases of real Redis."""

from __future__ import annotations

import pytest
from redis_spanner.consumers.redis_cache import RedisCache

from tests.readthrough_suite import ReadThroughSuite


class TestReadThroughOnRedis(ReadThroughSuite):
    @pytest.fixture
    def cache(self, redis_cache: RedisCache) -> RedisCache:
        return redis_cache
