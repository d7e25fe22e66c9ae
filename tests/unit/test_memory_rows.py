"""The in-memory rows used by unit tests read like the real ``SpannerRows``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fakes import MemoryRows
from tests.rows_contract import RowsContract, account


class TestMemoryRows(RowsContract):
    @pytest.fixture
    def rows(self) -> MemoryRows:
        return MemoryRows(version=0)

    @pytest.fixture
    def write(self, rows: MemoryRows) -> Callable[[str, int | None], int]:
        def commit(account_id: str, balance: int | None) -> int:
            key = account(account_id).key
            rows.version += 1
            if balance is None:
                rows.values.pop(key, None)
                rows.commits.pop(key, None)
            else:
                rows.values[key] = {"AccountId": account_id, "Balance": balance}
                rows.commits[key] = rows.version
            return rows.version

        return commit
