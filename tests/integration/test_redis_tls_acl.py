"""The consumers, and the writer's fast path, on a redis-server that speaks only TLS, requires
client certificates, and admits them as an ACL user confined to the namespace and to the
commands they send; the password comes from a file, is rotated under load without losing an
event, and never shows."""

from __future__ import annotations

import logging
import threading
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_spanner.consumers.readthrough import ReadThrough
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.verify import verify
from redis_spanner.infra.demo.workload import bump, latest_commit, seed_accounts
from redis_spanner.infra.local.faults import OwnProcess
from redis_spanner.producers.fast_path import FastPath
from redis_spanner.producers.fast_path_async import AsyncFastPath
from redis_spanner.producers.outbox import record
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import CacheOp, Entry
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.redis_connection import PasswordFile
from redis_spanner.schemas.settings import Settings, get_settings

from tests.integration.consumer_support import Ledger, start_pipeline
from tests.integration.fast_path_support import commit_through_from_env
from tests.redis_servers import TlsFiles, admin_client, make_tls_files, tls_redis, worker_acl
from tests.waiting import wait_until

STEP_EVENTS = 25
"""Events the worker must apply between two steps of the rotation."""


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
               ) -> Iterator[OwnProcess]:
    with tls_redis(tmp_path_factory.mktemp("redis-tls"), tls_files, mutual=True) as server:
        server.start()
        yield server


@pytest.fixture
def admin(tls_server: OwnProcess, tls_files: TlsFiles) -> Iterator[redis.Redis]:
    client = admin_client(tls_server, tls_files)
    yield client
    client.close()


class Account:
    """The test's ACL user: its name, its password file, and its current password."""

    def __init__(self, admin: redis.Redis, namespace: str, directory: Path) -> None:
        self.admin = admin
        self.name = f"worker-{uuid.uuid4().hex[:8]}"
        self.password = f"pw-{uuid.uuid4().hex}"
        self.file = directory / "redis-password"
        self.write(self.password)
        self.setuser("reset", "on", f">{self.password}", *worker_acl(namespace))

    def setuser(self, *rules: str) -> None:
        self.admin.execute_command("ACL", "SETUSER", self.name, *rules)

    def drop_connections(self, keep: str) -> int:
        """Close the user's connections but the one from address ``keep``, so its clients
        must reconnect."""
        addresses = [c["addr"] for c in self.admin.client_list() if c["user"] == self.name]
        for address in addresses:
            if address != keep:
                self.admin.client_kill(address)
        return len(addresses) - (keep in addresses)

    def write(self, password: str) -> None:
        """Switch the file atomically, as a mounted secret's new version appears."""
        staged = self.file.with_suffix(".new")
        staged.write_text(password + "\n")
        staged.replace(self.file)


@pytest.fixture
def on_tls(provisioned: Settings, tls_server: OwnProcess, tls_files: TlsFiles,
           admin: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[Settings, Account]]:
    """The test's resources with the TLS server as Redis, reached as the test's ACL user."""
    account = Account(admin, provisioned.namespace, tmp_path)
    for name, value in {
        "REDIS_URL": tls_server.address,
        "REDIS_SPANNER_REDIS_CA_FILE": str(tls_files.ca),
        "REDIS_SPANNER_REDIS_CERT_FILE": str(tls_files.client_cert),
        "REDIS_SPANNER_REDIS_KEY_FILE": str(tls_files.client_key),
        "REDIS_SPANNER_REDIS_USERNAME": account.name,
        "REDIS_SPANNER_REDIS_PASSWORD_FILE": str(account.file),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield get_settings(), account
    admin.acl_deluser(account.name)


def _settings(**changes: Any) -> Settings:
    return get_settings().model_copy(update=changes)


def test_pipeline_runs_through_mutual_tls_as_the_acl_user(
    on_tls: tuple[Settings, Account], database: Any, catalog: Catalog, running: Any,
) -> None:
    """Relay and worker apply committed events through TLS with a client certificate, as the
    confined ACL user; the read-through client fills and verify finds nothing stale."""
    settings, account = on_tls
    ledger = Ledger()
    consumer = start_pipeline(settings, running, ledger)
    try:
        ids = [f"tls-{n}" for n in range(10)]
        seed_accounts(database, ids)
        keys = [catalog.key(catalog.template("account"), [i]).key for i in ids]
        last = latest_commit(database)
        wait_until(lambda: all(e is not None and e.version == last(i) for i, e in
                               zip(ids, consumer.cache.get(keys), strict=True)), timeout=60)
        rows = SpannerRows(database)
        reader = ReadThrough(catalog, consumer.cache, rows)
        assert reader.get("account", "tls-3")["Balance"] == 1000
        assert verify(consumer.cache, catalog, rows).stale == []
        assert set(ledger.counts()) == {"applied"}
        users = {c["user"] for c in account.admin.client_list()}
        assert account.name in users
    finally:
        consumer.close()


def test_the_fast_path_from_env_tombstones_through_mutual_tls_as_the_acl_user(
    on_tls: tuple[Settings, Account], database: Any, catalog: Catalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Configured as the consumer is (``rediss://``, CA, client certificate and key, ACL
    username, password file), ``FastPath.from_env()`` and ``AsyncFastPath.from_env()`` connect
    as the confined user and tombstone each commit's key at its commit version; the password
    shows nowhere in the fast paths' reprs or the log."""
    settings, account = on_tls
    caplog.set_level(logging.DEBUG)
    seed_accounts(database, ["fp-tls-1", "fp-tls-2"])
    keys = [catalog.key(catalog.template("account"), [a]).key for a in ("fp-tls-1", "fp-tls-2")]
    cache = RedisCache.from_settings(settings)
    cache.apply([CacheOp.set(k, 1, {"Owner": "old", "Balance": 0}) for k in keys])

    def set_balance(account_id: str) -> Any:
        def work(tx: Any) -> None:
            tx.update("Accounts", ("AccountId", "Balance"), [[account_id, 5]])
            record(tx, EventType.ROW_CHANGED, "Accounts", (account_id,))
        return work

    shown: list[str] = []
    users: set[str] = set()

    def observe(fast: FastPath | AsyncFastPath) -> None:
        shown.append(repr(fast))
        users.update(c["user"] for c in account.admin.client_list())

    committed_async, committed = commit_through_from_env(
        database, set_balance("fp-tls-1"), set_balance("fp-tls-2"), observe)
    try:
        assert cache.get(keys) == [Entry(versions.from_datetime(at), True, None)
                                   for at in (committed_async, committed)]
    finally:
        cache.client.close()
    assert account.name in users
    assert "fast path failed" not in caplog.text
    assert account.password not in "\n".join([*shown, caplog.text])


def test_acl_user_gets_noperm_outside_its_prefix_and_commands(
    on_tls: tuple[Settings, Account],
) -> None:
    """The confined user writes its namespace, but a write to any other prefix, through the
    guard or directly, and a command it was not granted, are refused with NOPERM."""
    settings, _ = on_tls
    cache = RedisCache.from_settings(settings)
    try:
        inside = f"{settings.namespace}:account:{{Accounts:a}}"
        assert cache.apply([CacheOp.invalidate(inside, 5)])[0].applied
        for outside in ("rsc-other:account:{Accounts:a}", "session:1",
                        f"x{settings.namespace}:a"):
            with pytest.raises(TransientError, match="no permissions") as refused:
                cache.apply([CacheOp.invalidate(outside, 5)])
            assert isinstance(refused.value.__cause__, redis.exceptions.NoPermissionError)
            with pytest.raises(redis.exceptions.NoPermissionError):
                cache.client.set(outside, "x")
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                cache.client.execute_command(*command)
    finally:
        cache.client.close()


def test_tls_and_credentials_that_do_not_fit_fail_as_unavailable(
    on_tls: tuple[Settings, Account], tmp_path: Path,
) -> None:
    """Without a client certificate, with a CA that did not sign the server's certificate,
    or with a wrong password, a batch fails with TransientError (retry, never a crash) within
    the socket timeout."""
    settings, _ = on_tls
    other_ca = make_tls_files(tmp_path / "other", "other").ca
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    for changes in ({"redis_cert_file": None, "redis_key_file": None},
                    {"redis_ca_file": other_ca},
                    {"redis_password_file": wrong}):
        cache = RedisCache.from_settings(_settings(**changes, redis_timeout_seconds=2.0))
        try:
            with pytest.raises(TransientError):
                cache.apply([CacheOp.invalidate(f"{settings.namespace}:account:{{A:1}}", 1)])
        finally:
            cache.client.close()


def test_password_never_appears_in_logs_reprs_or_errors(
    on_tls: tuple[Settings, Account], caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    """The password (from the file, or inside REDIS_URL) is absent from the settings' repr,
    the provider's and clients' reprs, every log record down to DEBUG, and the whole chain of
    an authentication failure."""
    settings, account = on_tls
    caplog.set_level(logging.DEBUG)
    seen: list[str] = [repr(settings), str(settings), repr(PasswordFile(account.file))]
    cache = RedisCache.from_settings(settings)
    try:
        cache.apply([CacheOp.invalidate(f"{settings.namespace}:account:{{A:1}}", 1)])
        assert isinstance(cache.client, redis.Redis)  # one server, not a cluster
        seen += [repr(cache), repr(cache.client), repr(cache.client.connection_pool)]
    finally:
        cache.client.close()
    account.setuser(f"<{account.password}")
    failing = RedisCache.from_settings(settings)
    try:
        with pytest.raises(TransientError) as caught:
            failing.apply([CacheOp.invalidate(f"{settings.namespace}:account:{{A:1}}", 1)])
        seen += traceback.format_exception(caught.value)
    finally:
        failing.client.close()
    in_url = Settings(REDIS_URL=f"rediss://someone:{account.password}@127.0.0.1:1/0",
                      redis_password_file=None, redis_username=None, redis_ca_file=None,
                      redis_cert_file=None, redis_key_file=None)
    seen += [repr(in_url), str(in_url.model_dump())]
    unreachable = RedisCache.from_settings(in_url)
    try:
        with pytest.raises(TransientError) as caught:
            unreachable.apply([CacheOp.invalidate("rsc:account:{A:1}", 1)])
        seen += [repr(unreachable), *traceback.format_exception(caught.value)]
    finally:
        unreachable.client.close()
    seen += [r.getMessage() for r in caplog.records]
    leaks = [text for text in seen if account.password in text]
    assert not leaks


def test_password_rotation_under_load_loses_no_event(
    on_tls: tuple[Settings, Account], database: Any, catalog: Catalog, running: Any,
) -> None:
    """Rotation while writers commit a steady stream: the user gets a second password, the
    file switches to it, every worker connection is dropped (new ones read the new file),
    then the old password is removed. A connection authenticated with the old password keeps
    working until it reconnects; the old password is refused for new ones. No event is
    nacked or dead-lettered, and no cached key is stale after quiescence."""
    settings, account = on_tls
    ids = [f"rot-{n}" for n in range(20)]
    seed_accounts(database, ids)
    ledger = Ledger()
    consumer = start_pipeline(settings, running, ledger)
    held = redis.Redis.from_url(settings.require_redis_url(), single_connection_client=True,
                                ssl_ca_certs=str(settings.redis_ca_file),
                                ssl_certfile=str(settings.redis_cert_file),
                                ssl_keyfile=str(settings.redis_key_file),
                                credential_provider=PasswordFile(account.file, account.name))
    stop = threading.Event()
    written: list[str] = []

    def write(ended: threading.Event) -> None:
        n = 0
        while not (stop.is_set() or ended.is_set()):
            written.append(bump(database, ids[n % len(ids)], 1))
            n += 1

    try:
        assert held.ping()  # authenticated with the old password
        host, port = held.connection._sock.getsockname()[:2]  # type: ignore[union-attr]
        keep = f"{host}:{port}"
        running(write)
        applied = lambda: len(ledger.events())  # noqa: E731
        wait_until(lambda: applied() >= len(ids) + 10, timeout=60)

        old, new = account.password, f"pw-{uuid.uuid4().hex}"
        account.setuser(f">{new}")  # the user now has both passwords
        account.write(new)
        assert account.drop_connections(keep) >= 1  # the worker reconnects with the new file
        mark = applied()
        wait_until(lambda: applied() >= mark + STEP_EVENTS, timeout=60)
        account.setuser(f"<{old}")
        account.password = new
        mark = applied()
        wait_until(lambda: applied() >= mark + STEP_EVENTS, timeout=60)

        assert held.ping()  # still the connection authenticated with the old password
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(settings.require_redis_url(), username=account.name,
                                 password=old, ssl_ca_certs=str(settings.redis_ca_file),
                                 ssl_certfile=str(settings.redis_cert_file),
                                 ssl_keyfile=str(settings.redis_key_file)).ping()
        assert account.drop_connections(keep) >= 1
        mark = applied()
        wait_until(lambda: applied() >= mark + STEP_EVENTS, timeout=60)
        stop.set()
        wait_until(lambda: applied() == len(ids) + len(set(written)), timeout=120)
        assert set(ledger.counts()) == {"applied"}, ledger.counts()
        assert verify(consumer.cache, catalog, SpannerRows(database)).stale == []
    finally:
        stop.set()
        held.close()
        consumer.close()
