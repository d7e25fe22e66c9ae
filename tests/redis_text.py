"""Redis answers as text, whether or not the client was built with ``decode_responses``."""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def text_hash(client: redis.Redis | RedisCluster, key: str) -> dict[str, str]:
    """HGETALL of ``key`` with its fields and values as text (empty for a missing key)."""
    return {text(k): text(v) for k, v in client.hgetall(key).items()}
