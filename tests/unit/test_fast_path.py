"""The fast path's pure logic: which events it sees (only the committed attempt's, only after the
commit), which keys they map to, and the settings its own client honours."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_spanner.producers.fast_path import FastPath, tombstone_keys
from redis_spanner.producers.fast_path_async import AsyncFastPath
from redis_spanner.producers.outbox import Recorded, record, recording
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.errors import ConfigError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

CATALOG = Catalog("rsc", DEMO)
COMMITTED = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


class FakeTransaction:
    def __init__(self) -> None:
        self.inserted: list[Any] = []
        self.committed: dt.datetime | None = None

    def insert(self, table: str, columns: Sequence[str], values: list[Any]) -> None:
        self.inserted.append((table, values))


class AbortOnceDatabase:
    """Runs the work twice, as Spanner's client does when the first commit aborts: only the
    second attempt commits."""

    def __init__(self) -> None:
        self.attempts: list[FakeTransaction] = []

    def run_in_transaction(self, work: Callable[[Any], Any], **_: Any) -> Any:
        first = FakeTransaction()
        self.attempts.append(first)
        work(first)
        second = FakeTransaction()
        self.attempts.append(second)
        result = work(second)
        second.committed = COMMITTED
        return result


class Collect:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Recorded], Any]] = []

    def after_commit(self, events: Sequence[Recorded], committed: Any) -> None:
        self.calls.append((list(events), committed))


def test_record_collects_events_only_inside_a_recording() -> None:
    """Outside a recording ``record`` keeps nothing; inside, each event with its id."""
    tx = FakeTransaction()
    record(tx, EventType.ROW_CHANGED, "Accounts", ("a-1",))
    with recording() as events:
        event_id = record(tx, EventType.ROW_DELETED, "Accounts", ("a-2",))
    record(tx, EventType.ROW_CHANGED, "Accounts", ("a-3",))
    assert events == [Recorded(event_id, EventType.ROW_DELETED, "Accounts", ("a-2",))]
    assert len(tx.inserted) == 3


def test_the_fast_path_sees_only_the_committed_attempt_once_after_the_commit() -> None:
    """An aborted attempt's events are dropped; the fast path is called once, with the
    committed attempt's events and its commit timestamp."""
    database = AbortOnceDatabase()
    fast_path = Collect()
    counter = iter(range(10))

    def work(tx: Any) -> str:
        return record(tx, EventType.ROW_CHANGED, "Accounts", (f"a-{next(counter)}",))

    event_id, committed = run_transaction(database, work, fast_path=fast_path)

    assert committed == COMMITTED
    assert fast_path.calls == [
        ([Recorded(event_id, EventType.ROW_CHANGED, "Accounts", ("a-1",))], COMMITTED)]


def test_a_failed_transaction_never_reaches_the_fast_path() -> None:
    """Work that raises commits nothing, so nothing is tombstoned."""
    class Boom(Exception):
        pass

    def work(tx: Any) -> None:
        record(tx, EventType.ROW_CHANGED, "Accounts", ("a-1",))
        raise Boom

    fast_path = Collect()
    with pytest.raises(Boom):
        run_transaction(AbortOnceDatabase(), work, fast_path=fast_path)
    assert fast_path.calls == []


def test_events_map_to_every_key_they_feed_once_and_refused_ones_are_left_to_the_outbox() -> None:
    """A team's event feeds its row and its member list; a member's event the member list; the
    same key twice is tombstoned once; an event on an undeclared table or with a key of the
    wrong arity is skipped without hiding the others."""
    events = [
        Recorded("event-0001", EventType.ROW_CHANGED, "Teams", (7,)),
        Recorded("event-0002", EventType.ROW_CHANGED, "Members", (7, "m1")),
        Recorded("event-0003", EventType.ROW_CHANGED, "Unknown", ("x",)),
        Recorded("event-0004", EventType.ROW_DELETED, "Accounts", ("a", "b")),
        Recorded("event-0005", EventType.ROW_REWARM, "Accounts", ("a-9",)),
    ]
    assert tombstone_keys(CATALOG, events, 10**18) == [
        "rsc:team:{Teams:7}", "rsc:team-members:{Teams:7}", "rsc:account:{Accounts:a-9}"]


SECRET = "s3cret-value-77"


@pytest.mark.parametrize("field", ["redis_cluster", "redis_ca_file", "redis_cert_file",
                                   "redis_key_file", "redis_password_file"])
def test_from_env_refuses_each_setting_it_does_not_honour_without_echoing_the_url(
    field: str, tmp_path: Path,
) -> None:
    """A setting the fast path's own client would ignore (cluster, TLS files, password file) is
    a ``ConfigError`` naming the setting and the way out, never a client that connects
    differently from the consumer's; the Redis URL and its password appear nowhere."""
    given: dict[str, Any] = {field: True if field == "redis_cluster" else tmp_path / "file"}
    settings = Settings(REDIS_URL=f"rediss://:{SECRET}@10.0.0.3:6378/0", **given)
    for build in (FastPath.from_settings, AsyncFastPath.from_settings):
        with pytest.raises(ConfigError) as refused:
            build(settings)
        assert "REDIS_SPANNER_" + field.upper() in str(refused.value)
        assert "FastPath(client, catalog)" in str(refused.value)
        assert SECRET not in str(refused.value) and "10.0.0.3" not in str(refused.value)


def test_the_fast_path_built_from_settings_keeps_the_password_out_of_its_repr() -> None:
    """``from_settings`` connects lazily to ``REDIS_URL`` with the username and timeouts set;
    its repr names the server but never the password."""
    settings = Settings(REDIS_URL=f"redis://:{SECRET}@10.0.0.3:6378/0",
                        redis_username="writer", redis_timeout_seconds=0.5)
    sync, asynchronous = FastPath.from_settings(settings), AsyncFastPath.from_settings(settings)
    for fast_path in (sync, asynchronous):
        assert SECRET not in repr(fast_path) and "10.0.0.3:6378" in repr(fast_path)
    client = sync.writer.client
    assert isinstance(client, redis.Redis)  # no cluster setting: a single-server client
    options = client.connection_pool.connection_kwargs
    assert (options["username"], options["socket_timeout"]) == ("writer", 0.5)
    sync.close()
