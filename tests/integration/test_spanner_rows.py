"""The real ``SpannerRows`` on the Spanner emulator passes the rows contract that the
in-memory ``MemoryRows`` passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import spanner
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas import versions

from tests.rows_contract import RowsContract


class TestSpannerRows(RowsContract):
    @pytest.fixture
    def rows(self, database: Any) -> SpannerRows:
        return SpannerRows(database)

    @pytest.fixture
    def write(self, database: Any) -> Callable[[str, int | None], int]:
        def commit(account_id: str, balance: int | None) -> int:
            def work(tx: Any) -> None:
                if balance is None:
                    tx.delete("Accounts", spanner.KeySet(keys=[[account_id]]))
                else:
                    tx.insert_or_update(
                        "Accounts", ("AccountId", "Owner", "Balance", "UpdatedAt"),
                        [[account_id, "owner", balance, spanner.COMMIT_TIMESTAMP]])

            _, committed = run_transaction(database, work)
            return versions.from_datetime(committed)

        return commit
