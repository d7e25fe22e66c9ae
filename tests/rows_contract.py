"""One suite for reading rows behind cache keys, run against the in-memory ``MemoryRows``
(tests/unit/test_memory_rows.py) and the real ``SpannerRows`` on the Spanner emulator
(tests/integration/test_spanner_rows.py)."""

from __future__ import annotations

from typing import Any

from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.keys import CacheKey, Catalog

CATALOG = Catalog("rows", DEMO)


def account(account_id: str) -> CacheKey:
    return CATALOG.key(CATALOG.template("account"), [account_id])


class RowsContract:
    """Subclasses provide ``rows`` (the reader) and ``write`` fixtures; ``write(account_id,
    balance)`` commits an account row (``balance=None`` deletes it) and returns the commit's
    version."""

    def test_every_key_asked_is_answered_missing_rows_as_none(
        self, rows: Any, write: Any
    ) -> None:
        """A read answers each key it was asked, ``None`` for a row that does not exist, at
        one snapshot version no older than the commits made before it."""
        committed = write("r-1", 10)
        values, version = rows.read([account("r-1"), account("r-none")])
        assert set(values) == {account("r-1").key, account("r-none").key}
        assert values[account("r-1").key]["Balance"] == 10
        assert values[account("r-none").key] is None
        assert version >= committed

    def test_a_later_read_sees_the_later_commit(self, rows: Any, write: Any) -> None:
        """After a commit, a read returns its value at a version at or after that commit."""
        write("r-2", 1)
        committed = write("r-2", 2)
        values, version = rows.read([account("r-2")])
        assert values[account("r-2").key]["Balance"] == 2 and version >= committed

    def test_version_only_read_gives_each_rows_last_commit(self, rows: Any, write: Any) -> None:
        """A version-only read gives each row's last commit version (``None`` for a missing
        row) and a snapshot version no older than it."""
        write("r-3", 1)
        last = write("r-3", 2)
        found, version = rows.read_versions([account("r-3"), account("r-gone")])
        assert found == {account("r-3").key: last, account("r-gone").key: None}
        assert version >= last

    def test_a_deleted_row_reads_as_missing(self, rows: Any, write: Any) -> None:
        """After a delete, both reads answer ``None`` for the row."""
        write("r-4", 5)
        deleted = write("r-4", None)
        values, version = rows.read([account("r-4")])
        found, _ = rows.read_versions([account("r-4")])
        assert values == {account("r-4").key: None} and found == {account("r-4").key: None}
        assert version >= deleted

    def test_no_keys_still_gives_a_version(self, rows: Any, write: Any) -> None:
        """An empty read still answers with a snapshot version."""
        committed = write("r-5", 1)
        values, version = rows.read([])
        assert values == {} and version >= committed
