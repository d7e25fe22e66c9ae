"""The fast path's pure logic: which events it sees (only the committed attempt's, only after the
commit), which keys they map to, and the Redis settings its own client honours (the
consumer's, all of them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis_spanner.infra.local.processes import free_ports
from redis_spanner.producers.fast_path import FastPath, tombstone_keys
from redis_spanner.producers.fast_path_async import AsyncFastPath
from redis_spanner.producers.outbox import Recorded, record, recording
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.errors import ConfigError, TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.redis_connection import PasswordFile, client_options
from redis_spanner.schemas.settings import Settings

from tests.secret_files import SECRET

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






def test_from_settings_reads_the_tls_and_password_file_settings_as_the_consumer_does(
    files: dict[str, Path],
) -> None:
    """With a ``rediss://`` URL, the TLS files, an ACL username and a password file, both fast
    paths' clients get the options the consumer's client gets: the CA, certificate and key for
    TLS, and a credential provider reading the file with the username. Nothing connects yet."""
    url = "rediss://10.0.0.3:6378/0"
    settings = Settings(REDIS_URL=url, redis_ca_file=files["ca"], redis_cert_file=files["cert"],
                        redis_key_file=files["key"], redis_username="writer",
                        redis_password_file=files["password"], redis_timeout_seconds=0.5)
    expected = client_options(settings, url)
    sync, asynchronous = FastPath.from_settings(settings), AsyncFastPath.from_settings(settings)
    for client in (sync.writer.client, asynchronous.writer.client):
        assert isinstance(client, redis.Redis | aioredis.Redis)
        kwargs = client.connection_pool.connection_kwargs
        for option in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "socket_timeout"):
            assert kwargs[option] == expected[option], option
        provider = kwargs["credential_provider"]
        assert isinstance(provider, PasswordFile)
        assert provider.get_credentials() == ("writer", SECRET)
        assert SECRET not in repr(client) and "10.0.0.3:6378" in repr(sync)
    sync.close()


def test_from_settings_with_the_cluster_setting_builds_cluster_clients() -> None:
    """``REDIS_SPANNER_REDIS_CLUSTER=true`` gives the asyncio fast path redis-py's asyncio
    cluster client (it reads the slot map on first use); the blocking one, whose cluster client
    reads the slot map when built, is tested against a real cluster in the integration tests."""
    settings = Settings(REDIS_URL=f"redis://:{SECRET}@127.0.0.1:{free_ports(1)[0]}/0",
                        redis_cluster=True, redis_timeout_seconds=0.5)
    asynchronous = AsyncFastPath.from_settings(settings)
    assert isinstance(asynchronous.writer.client, AsyncRedisCluster)
    assert SECRET not in repr(asynchronous)


def test_a_cluster_unreachable_at_start_fails_each_commit_quietly_never_the_writer() -> None:
    """A cluster nobody answers for when the writer starts does not stop ``from_settings``:
    each commit's fast path then tries to connect, fails, is counted and logged, and never
    raises; the message names the address, never the password."""
    settings = Settings(REDIS_URL=f"redis://:{SECRET}@127.0.0.1:{free_ports(1)[0]}/0",
                        redis_cluster=True, redis_timeout_seconds=0.5)
    fast_path = FastPath.from_settings(settings)
    with pytest.raises(TransientError) as unreachable:
        fast_path.writer.write(["rsc:account:{Accounts:a-1}"], 10**18)
    assert "127.0.0.1" in str(unreachable.value) and SECRET not in str(unreachable.value)
    before = REGISTRY.get_sample_value("redis_spanner_fast_path_failures_total") or 0.0
    fast_path.after_commit([Recorded("event-0001", EventType.ROW_CHANGED, "Accounts", ("a-1",))],
                           COMMITTED)
    assert REGISTRY.get_sample_value("redis_spanner_fast_path_failures_total") == before + 1
    fast_path.close()  # never connected: nothing to close


@pytest.mark.parametrize(("url", "fields", "named"), [
    ("redis://10.0.0.3:6378/0", {"redis_ca_file": "ca"}, "REDIS_SPANNER_REDIS_CA_FILE"),
    ("rediss://10.0.0.3:6378/0", {"redis_cert_file": "cert"}, "REDIS_SPANNER_REDIS_KEY_FILE"),
    ("rediss://10.0.0.3:6378/0", {"redis_password_file": "missing"},
     "REDIS_SPANNER_REDIS_PASSWORD_FILE"),
    (f"redis://:{SECRET}@10.0.0.3:6378/0", {"redis_password_file": "password"},
     "REDIS_SPANNER_REDIS_PASSWORD_FILE"),
    (f"redis://:{SECRET}@10.0.0.3:6378/0", {"redis_cluster": True, "redis_ca_file": "ca"},
     "REDIS_SPANNER_REDIS_CA_FILE"),
])
def test_from_settings_refuses_what_the_consumer_refuses_without_echoing_the_url(
    files: dict[str, Path], tmp_path: Path, url: str, fields: dict[str, Any], named: str,
) -> None:
    """Settings the consumer refuses at start (TLS files with ``redis://``, a certificate
    without its key, a missing password file, a password both in the URL and in a file) are a
    ``ConfigError`` naming the setting from both fast paths too; the URL's password and host
    appear nowhere."""
    given: dict[str, Any] = {k: v if isinstance(v, bool) else files.get(v, tmp_path / v)
                             for k, v in fields.items()}
    settings = Settings(REDIS_URL=url, **given)
    for build in (FastPath.from_settings, AsyncFastPath.from_settings):
        with pytest.raises(ConfigError) as refused:
            build(settings)
        assert named in str(refused.value)
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
