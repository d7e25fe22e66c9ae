"""Durable invalidations: with REDIS_SPANNER_REDIS_WAIT_REPLICAS set, a message is acked only
once a replica holds its writes, so a failover to that replica can't bring back a stale value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis_spanner.consumers.messages import Disposition
from redis_spanner.infra import faults
from redis_spanner.infra.demo import chaos
from redis_spanner.schemas.cache import parse_entry

from tests.faults.harness import own_process
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
