"""The consumers' batches on Redis Cluster: single-key commands grouped by the primary that owns
their slot, one pipeline per node, sent at once; a command that meets a slot on the move or a
node failing over is sent again through the cluster client. On a single Redis, one pipeline.

The client itself comes from ``schemas.redis_connection``, which the writer's fast path shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    NoScriptError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)
from redis_spanner.schemas.redis_connection import RedisClient

Command = tuple[str | int | bytes, ...]
"""A command whose only key is its fourth word (EVALSHA sha 1 key ...)."""
# Replies that mean "ask the cluster again": the slot moved, is moving, or its node is down.
_REROUTE = (MovedError, AskError, TryAgainError, ClusterDownError, ConnectionError, TimeoutError)


def pipelined(client: RedisClient, commands: Sequence[Command]) -> list[Any]:
    """Run single-key commands (``EVALSHA sha 1 key ...``) in one round trip per node and
    return each reply in order (an error reply as its exception). On a cluster the commands are
    grouped by the primary that owns their key's slot, and the nodes' pipelines run at once;
    a command that meets a slot on the move or a node failing over is sent again on its own
    through the cluster client, which follows MOVED and ASK and refreshes its slot map."""
    if not isinstance(client, RedisCluster):
        return _pipeline(client, commands)
    groups: dict[str, list[int]] = {}
    nodes: dict[str, Any] = {}
    for index, command in enumerate(commands):
        node = client.get_node_from_key(str(command[3]))
        groups.setdefault(node.name, []).append(index)
        nodes[node.name] = node
    replies: list[Any] = [None] * len(commands)

    def run(name: str) -> None:
        indexes = groups[name]
        try:
            answers = _pipeline(client.get_redis_connection(nodes[name]),
                                [commands[i] for i in indexes])
        except (ConnectionError, TimeoutError) as e:
            answers = [e] * len(indexes)
        for i, answer in zip(indexes, answers, strict=True):
            replies[i] = answer

    if len(groups) == 1:
        run(next(iter(groups)))
    else:
        with ThreadPoolExecutor(len(groups)) as pool:
            list(pool.map(run, groups))
    for i, reply in enumerate(replies):
        if isinstance(reply, _REROUTE):
            try:
                replies[i] = client.execute_command(*commands[i])
            except (ResponseError, NoScriptError) as e:
                replies[i] = e
    return replies


def _pipeline(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(pipe.execute(raise_on_error=False))
