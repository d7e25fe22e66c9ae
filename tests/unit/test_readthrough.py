"""The read-through client over the in-memory cache."""

from __future__ import annotations

import pytest

from tests.fakes import MemoryCache
from tests.readthrough_suite import ReadThroughSuite


class TestReadThroughInMemory(ReadThroughSuite):
    @pytest.fixture
    def cache(self) -> MemoryCache:
        return MemoryCache()
