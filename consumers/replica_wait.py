"""WAIT after a batch's writes, so a batch is acked only once enough replicas hold them.

WAIT covers the writes of its own connection only, and a redelivered batch whose writes the
guard refuses (applied by an earlier delivery, maybe not yet replicated) writes nothing. So each
WAIT follows, on the same connection, a write that reaches the replicas: the WAIT then covers
everything the primary holds, whoever wrote it. On one server that write is a PUBLISH, which
every replica receives. On a cluster a PUBLISH travels the cluster bus, not the replication
stream, so it is a SET of a short-lived barrier key in a slot of that primary
(``<namespace>:_replication-barrier{n}``).

On a cluster every primary the batch wrote to is waited on, all at once, for ``replicas`` of
its own replicas; any primary short of them fails the whole batch with a ``TransientError``.
Its events are retried, and the guard makes applying them again a no-op.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError, MovedError
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.keys import internal_key
from redis_spanner.schemas.redis_connection import REDIS_ERRORS, RedisClient

WAIT_CHANNEL = "redis-spanner:replication-barrier"
BARRIER = "replication-barrier"
BARRIER_TTL_MS = 60_000
_SEARCH_LIMIT = 100_000


class ReplicaWait:
    """``wait(keys)``: WAIT until ``replicas`` replicas of each primary that owns one of
    ``keys`` hold every write made so far; fewer within ``timeout_ms`` is a ``TransientError``."""

    def __init__(self, client: RedisClient, replicas: int, timeout_ms: int, *, namespace: str,
                 where: str) -> None:
        self._client = client
        self._replicas = replicas
        self._timeout_ms = timeout_ms
        self._namespace = namespace
        self._where = where
        self._barriers: dict[str, str] = {}
        """A barrier key in a slot of each primary, by node name."""

    def wait(self, keys: Sequence[str]) -> None:
        client = self._client
        if not isinstance(client, RedisCluster):
            self._settle(self._where, self._waited(client, lambda pipe: pipe.publish(
                WAIT_CHANNEL, "")))
            return
        try:
            nodes = {node.name: node for node in map(client.get_node_from_key, keys)}
        except REDIS_ERRORS as e:
            raise TransientError(f"redis unavailable ({self._where}): {type(e).__name__}") from e
        if len(nodes) == 1:
            answers = [self._on_primary(client, next(iter(nodes.values())))]
        else:
            with ThreadPoolExecutor(len(nodes)) as pool:
                answers = list(pool.map(lambda n: self._on_primary(client, n), nodes.values()))
        short = [(name, acked) for name, acked in zip(nodes, answers, strict=True)
                 if acked < self._replicas]
        if short:
            self._settle(", ".join(name for name, _ in short), min(a for _, a in short))

    def _on_primary(self, client: RedisCluster, node: ClusterNode) -> int:
        barrier = self._barrier(client, node)
        connection = client.get_redis_connection(node)
        try:
            return self._waited(connection, lambda pipe: pipe.set(barrier, "",
                                                                  px=BARRIER_TTL_MS))
        except TransientError as e:
            if isinstance(e.__cause__, MovedError | AskError):
                # The barrier's slot is moving or moved: the next batch reads the slot map
                # again and picks a key whose slot this primary owns by then.
                self._barriers.pop(node.name, None)
                if isinstance(e.__cause__, MovedError):
                    client.nodes_manager.initialize()
            raise

    def _barrier(self, client: RedisCluster, node: ClusterNode) -> str:
        """A barrier key whose slot ``node`` owns, by the client's slot map."""
        known = self._barriers.get(node.name)
        if known is not None and client.get_node_from_key(known).name == node.name:
            return known
        for n in itertools.islice(itertools.count(), _SEARCH_LIMIT):
            key = internal_key(self._namespace, BARRIER, str(n))
            if client.get_node_from_key(key).name == node.name:
                self._barriers[node.name] = key
                return key
        raise TransientError(f"no slot of {node.name} in the cluster's slot map")

    def _waited(self, connection: redis.Redis, barrier: Any) -> int:
        """``barrier(pipe)`` then WAIT, in one round trip on one connection: how many replicas
        acknowledged."""
        try:
            pipe = connection.pipeline(transaction=False)
            barrier(pipe)
            pipe.wait(self._replicas, self._timeout_ms)
            return int(pipe.execute()[1])
        except REDIS_ERRORS as e:
            raise TransientError(f"redis unavailable ({self._where}): {type(e).__name__}") from e

    def _settle(self, where: str, acknowledged: int) -> None:
        if acknowledged < self._replicas:
            raise TransientError(
                f"only {acknowledged} of {self._replicas} replica(s) acknowledged the "
                f"writes within {self._timeout_ms} ms ({where})"
            )
