"""The in-memory cache used by unit tests obeys the same guard contract as Redis."""

from __future__ import annotations

import pytest

from tests.cache_contract import CacheContract
from tests.fakes import MemoryCache


class TestMemoryCache(CacheContract):
    @pytest.fixture
    def cache(self) -> MemoryCache:
        return MemoryCache()
