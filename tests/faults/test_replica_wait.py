"""Durable invalidations: with REDIS_SPANNER_REDIS_WAIT_REPLICAS set, a message is acked only
once a replica holds its writes, so a failover to that replica can't bring back a stale value;
on a cluster, once a replica of every primary the batch wrote to holds them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis_spanner.consumers.messages import Disposition
from redis_spanner.infra.demo import chaos
from redis_spanner.infra.local import faults
from redis_spanner.infra.local.processes import LOOPBACK
from redis_spanner.schemas.cache import CacheOp, parse_entry
from redis_spanner.schemas.errors import TransientError

from tests.faults.harness import own_process
from tests.redis_servers import LocalCluster, start_cluster
from tests.redis_text import text_hash
from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[faults.OwnProcess]:
    directory = tmp_path / "replica"
    directory.mkdir()
    yield from own_process(faults.redis_server(directory))


def replicate(primary: faults.OwnProcess, client: redis.Redis) -> None:
    """Make the server of ``client`` a replica of ``primary``, and wait until it is in sync and
    the primary counts it for WAIT: online, which it becomes only at the replica's first
    acknowledgement (sent once a second), a while after the replica reports its link up."""
    host_port = primary.address.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with redis.Redis.from_url(primary.address, decode_responses=True) as admin:
        admin.config_set("repl-diskless-sync-delay", 0)
        client.replicaof(host, int(port))
        wait_until(lambda: client.info("replication").get("master_link_status") == "up",
                   timeout=30)

        def online() -> bool:
            info = admin.info("replication")
            return any(isinstance(v, dict) and v.get("state") == "online"
                       for k, v in info.items() if k.startswith("slave"))
        wait_until(online, timeout=30)


def outcomes_of(pipe: Pipeline, event_id: str) -> list[Disposition]:
    with pipe._lock:
        return [o.disposition for o in pipe.outcomes
                if o.event is not None and o.event.event_id == event_id]


def replica_version(client: redis.Redis, key: str) -> int | None:
    entry = parse_entry(text_hash(client, key))
    return entry.version if entry else None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cut", ["replica-frozen", "replica-disconnected"])
def test_message_is_acked_only_once_a_replica_holds_its_write(
    open_pipeline: Any, replica: faults.OwnProcess, cut: str
) -> None:
    """With the replication link healthy an invalidation is acked and the replica holds its
    tombstone. With the link cut (the replica frozen, or detached with REPLICAOF NO ONE) the
    primary applies the write but the message is nacked on every delivery; once the link is
    back it is acked, and the replica holds the tombstone."""
    pipe: Pipeline = open_pipeline(redis_wait_replicas=1, redis_wait_timeout_ms=1500,
                                   redis_timeout_seconds=5)
    replica_client = redis.Redis.from_url(replica.address, decode_responses=True)
    replicate(pipe.redis, replica_client)
    ids = pipe.accounts(2)
    pipe.fill(ids)
    pipe.start_relay()
    pipe.start_worker()
    healthy_key, cut_key = (k.key for k in pipe.keys(ids))

    first = pipe.bump(ids[0])
    wait_until(lambda: Disposition.ACK in outcomes_of(pipe, first), timeout=30)
    [healthy] = pipe.entries(ids[:1])
    assert healthy is not None and replica_version(replica_client, healthy_key) == healthy.version

    primary = redis.Redis.from_url(pipe.redis.address)
    if cut == "replica-frozen":
        replica.pause()
    else:
        replica_client.replicaof("NO", "ONE")
    try:
        second = pipe.bump(ids[1])
        wait_until(lambda: outcomes_of(pipe, second).count(Disposition.NACK) >= 2, timeout=30)
        assert Disposition.ACK not in outcomes_of(pipe, second)
        written = parse_entry(text_hash(primary, cut_key))
        assert written is not None and written.tombstone  # applied, just not replicated
    finally:
        if cut == "replica-frozen":
            replica.resume()
        else:
            replicate(pipe.redis, replica_client)
    wait_until(lambda: Disposition.ACK in outcomes_of(pipe, second), timeout=60)
    assert replica_version(replica_client, cut_key) == written.version
    primary.close()
    replica_client.close()
    pipe.check(ids)


@pytest.mark.timeout(120)
def test_failover_to_a_replica_that_missed_invalidations_leaves_no_stale_key(
    open_pipeline: Any, replica: faults.OwnProcess
) -> None:
    """The replication link is cut (the replica detached, keeping its data) while
    invalidations land on the primary; then the primary dies and the replica, holding the old
    values, takes over its address. None of those invalidations was acked (no replica had
    it), so Pub/Sub redelivers them to the new primary: every key ends coherent and nothing is
    lost. (Without the WAIT they are acked, lost with the primary, and the keys stay stale.)"""
    pipe: Pipeline = open_pipeline(redis_wait_replicas=1, redis_wait_timeout_ms=1500,
                                   redis_timeout_seconds=5)
    replica_client = redis.Redis.from_url(replica.address, decode_responses=True)
    replicate(pipe.redis, replica_client)
    ids = pipe.accounts(5)
    pipe.fill(ids)
    keys = [k.key for k in pipe.keys(ids)]
    wait_until(lambda: all(replica_client.exists(k) for k in keys), timeout=10)
    pipe.start_relay()
    pipe.start_worker()

    replica_client.replicaof("NO", "ONE")  # the link is cut: nothing more reaches the replica
    events = [pipe.bump(account) for account in ids]
    wait_until(lambda: all(Disposition.NACK in outcomes_of(pipe, e) for e in events),
               timeout=30)
    assert not any(Disposition.ACK in outcomes_of(pipe, e) for e in events)
    pipe.redis.kill()  # the primary dies with the tombstones only it had
    held = [parse_entry(text_hash(replica_client, k)) for k in keys]
    assert all(e is not None and not e.tombstone for e in held)  # the old values
    chaos.take_over(pipe.redis, replica)
    replica_client.close()
    pipe.check(ids)


# --- on a cluster ------------------------------------------------------------------------------

@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Three primaries with a replica each, every replica counted online by its primary."""
    directory = tmp_path / "cluster"
    directory.mkdir()
    generator = start_cluster(directory, replicas=1)
    cluster = next(generator)
    try:
        for port in cluster.ports:
            with redis.Redis(LOOPBACK, port, decode_responses=True) as node:
                if node.info("replication")["role"] == "master":
                    wait_until(partial(online_replicas, node), timeout=30)
        yield cluster
    finally:
        generator.close()


def online_replicas(primary: redis.Redis) -> int:
    """Replicas the primary counts for WAIT: online, a while after their link is up."""
    info = primary.info("replication")
    return sum(1 for k, v in info.items()
               if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online")


def replica_of(cluster: LocalCluster, primary_port: int) -> tuple[faults.OwnProcess, int]:
    """The replica node of the primary on ``primary_port``, and its port."""
    for node in cluster.nodes:
        port = node.ports["redis"]
        with redis.Redis(LOOPBACK, port, decode_responses=True) as client:
            info = client.info("replication")
        if info["role"] == "slave" and int(info["master_port"]) == primary_port:
            return node, port
    raise AssertionError(f"no replica of {primary_port}")


def version_on_replica(port: int, key: str) -> int | None:
    with redis.Redis(LOOPBACK, port, decode_responses=True,
                     single_connection_client=True) as replica:
        replica.execute_command("READONLY")  # a replica serves reads of its primary's slots
        entry = parse_entry(text_hash(replica, key))
    return entry.version if entry else None


@pytest.mark.timeout(180)
def test_on_a_cluster_a_batch_is_acked_only_once_every_primary_written_has_its_replica(
    replicated_cluster: LocalCluster, open_pipeline: Any,
) -> None:
    """On a cluster of three primaries with a replica each, events on every primary are acked
    and each replica holds its primary's tombstones. With one replica frozen, a batch writing
    to all three primaries fails as a whole, naming that primary, although every primary
    applied it, while one writing only to the other two succeeds; an event on that primary is
    nacked on every delivery while it is applied on the primary. Once the replica is back the
    event is acked, the replica holds the tombstone, and nothing is lost or stale."""
    pipe: Pipeline = open_pipeline(
        redis_wait_replicas=1, redis_wait_timeout_ms=1500, redis_timeout_seconds=5,
        environ={"REDIS_URL": replicated_cluster.url, "REDIS_SPANNER_REDIS_CLUSTER": "true"})
    client = pipe.cache.client
    assert isinstance(client, RedisCluster)
    ids = pipe.accounts(30)
    owner = {k.key: client.get_node_from_key(k.key).port for k in pipe.keys(ids)}
    assert len(set(owner.values())) == 3
    first_on = {port: next(k for k, p in owner.items() if p == port) for port in owner.values()}
    pipe.fill(ids)
    pipe.start_relay()
    pipe.start_worker()

    account_of = {k.key: i for k, i in zip(pipe.keys(ids), ids, strict=True)}
    healthy = {port: pipe.bump(account_of[key]) for port, key in first_on.items()}
    wait_until(lambda: all(Disposition.ACK in outcomes_of(pipe, e) for e in healthy.values()),
               timeout=60)
    for port, key in first_on.items():
        [entry] = pipe.cache.get([key])
        assert entry is not None and entry.tombstone
        assert version_on_replica(replica_of(replicated_cluster, port)[1], key) == entry.version

    cut_port = sorted(first_on)[0]
    cut_key = next(k for k, p in owner.items() if p == cut_port and k != first_on[cut_port])
    replica, replica_port = replica_of(replicated_cluster, cut_port)
    spread = [pipe.catalog.key(pipe.catalog.template("account"), [f"w-{n}"]).key
              for n in range(30)]
    replica.pause()
    try:
        with pytest.raises(TransientError, match=f"{LOOPBACK}:{cut_port}") as short:
            pipe.cache.apply([CacheOp.invalidate(k, time.time_ns()) for k in spread])
        assert "only 0 of 1 replica(s)" in str(short.value)
        assert all(e is not None and e.tombstone for e in pipe.cache.get(spread))
        elsewhere = [k for k in spread if client.get_node_from_key(k).port != cut_port]
        pipe.cache.apply([CacheOp.invalidate(k, time.time_ns()) for k in elsewhere])
        cut = pipe.bump(account_of[cut_key])
        wait_until(lambda: outcomes_of(pipe, cut).count(Disposition.NACK) >= 2, timeout=60)
        assert Disposition.ACK not in outcomes_of(pipe, cut)
        [written] = pipe.cache.get([cut_key])
        assert written is not None and written.tombstone  # applied, just not replicated
    finally:
        replica.resume()
    wait_until(lambda: Disposition.ACK in outcomes_of(pipe, cut), timeout=60)
    assert version_on_replica(replica_port, cut_key) == written.version
    pipe.cache.apply([CacheOp.invalidate(k, time.time_ns()) for k in spread])  # all replicas
    pipe.check(ids)
