"""The consumers' one touch point with redis-py: guarded writes and reads of cache entries.

A batch of writes is one round trip. On a single Redis it is one EVALSHA of the guard per
``BATCH_KEYS`` keys (``schemas.cache.batched``). On Redis Cluster each call must stay in one
slot, so there is one EVALSHA per key; one entity's keys share a hash tag, and the calls are
grouped by the node that owns their slot, one pipeline per node, all sent at once
(``redis_pipeline.pipelined``). The client is built from the settings by
``schemas.redis_connection``.
With ``wait_replicas`` a second round trip follows it: WAIT until that many replicas of every
primary written to have every write made so far (``replica_wait``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError
from redis_spanner.consumers import metrics
from redis_spanner.consumers.redis_pipeline import pipelined
from redis_spanner.consumers.replica_wait import ReplicaWait
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import (
    GUARD,
    LEASE_RELEASE,
    OP_INVALIDATE,
    Applied,
    CacheOp,
    Entry,
    batched,
    parse_entry,
)
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.redis_connection import REDIS_ERRORS, RedisClient, connect
from redis_spanner.schemas.settings import Settings, redacted_url

if TYPE_CHECKING:
    from redis_spanner.consumers.field_crypto import FieldCrypto

log = logging.getLogger(__name__)

BATCH_KEYS = 100
"""Keys per guard call on a single Redis: each call runs its keys' writes back to back, so
this bounds how long one call holds the server."""


class RedisCache:
    def __init__(
        self,
        client: RedisClient,
        *,
        cache_ttl_seconds: int,
        tombstone_ttl_seconds: int,
        max_version_skew_seconds: float = versions.DEFAULT_MAX_SKEW_SECONDS,
        where: str = "redis",
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
        namespace: str = "rsc",  # of the barrier keys WAIT writes on a cluster
        crypto: FieldCrypto | None = None,
    ) -> None:
        self.client = client
        self._crypto = crypto
        """Seals sensitive columns on the way in, opens them on the way out (None: none)."""
        self._replicas = ReplicaWait(client, wait_replicas, wait_timeout_ms,
                                     namespace=namespace, where=where) if wait_replicas else None
        self._tombstone_ttl_ms = tombstone_ttl_seconds * 1000
        self._value_ttl_ms = cache_ttl_seconds * 1000
        self._max_skew_seconds = max_version_skew_seconds
        self._where = where

    @classmethod
    def from_settings(cls, settings: Settings, crypto: FieldCrypto | None = None) -> RedisCache:
        return cls(
            connect(settings),
            cache_ttl_seconds=settings.cache_ttl_seconds,
            tombstone_ttl_seconds=settings.tombstone_ttl_seconds,
            max_version_skew_seconds=settings.max_version_skew_seconds,
            where=redacted_url(settings.require_redis_url()),
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
            namespace=settings.namespace,
            crypto=crypto,
        )

    def __repr__(self) -> str:
        return f"RedisCache({self._where})"

    def ceiling(self) -> int:
        """The newest version an entry may hold now; anything newer is foreign."""
        return versions.ceiling(self._max_skew_seconds)

    def apply(self, ops: Sequence[CacheOp]) -> list[Applied]:
        """Run every op through the guard in one round trip. Raises ``TransientError``.
        Whatever a key holds, its op gets an answer: a foreign entry is overwritten."""
        stored = ops if self._crypto is None else self._crypto.seal_ops(ops)
        calls = guard_calls(stored, value_ttl_ms=self._value_ttl_ms,
                            tombstone_ttl_ms=self._tombstone_ttl_ms, ceiling=self.ceiling())
        answers = guard_answers(ops, self._scripted(GUARD, calls))
        if ops and self._replicas is not None:
            self._replicas.wait([op.key for op in ops])
        return answers

    def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy``, or None when CONFIG GET is refused (managed Redis
        often disables it). Raises ``TransientError``."""
        try:
            return str(self.client.config_get("maxmemory-policy")["maxmemory-policy"])
        except (ResponseError, KeyError):
            return None
        except REDIS_ERRORS as e:
            raise TransientError(f"redis unavailable ({self._where}): {type(e).__name__}") from e

    def _scripted(self, script: str, calls: Sequence[tuple[str | int, ...]]) -> list[Any]:
        """``script`` (single-key) run for each call (key first), in one round trip: the reply
        of each call, in order."""
        if not calls:
            return []
        # On a cluster each key has its own slot: one call per key, grouped by node.
        per_key = isinstance(self.client, RedisCluster)
        size = 1 if per_key else BATCH_KEYS
        if not per_key:
            script = batched(script, len(calls[0]) - 1)
        groups = [calls[i:i + size] for i in range(0, len(calls), size)]
        sha = _sha1(script)
        try:
            replies = self._evalsha(sha, groups)
            if any(isinstance(r, NoScriptError) for r in replies):
                # Redis restarted or was flushed: load the script and run the batch again.
                # Running a call twice is harmless: both scripts are idempotent.
                self.client.script_load(script)
                replies = self._evalsha(sha, groups)
        except REDIS_ERRORS as e:
            raise TransientError(f"redis unavailable ({self._where}): {type(e).__name__}") from e
        for reply in replies:
            if isinstance(reply, Exception):
                raise TransientError(f"redis refused a write: {reply}") from reply
        return replies if per_key else [answer for reply in replies for answer in reply]

    def _evalsha(self, sha: str, groups: Sequence[Sequence[tuple[str | int, ...]]]) -> list[Any]:
        """One EVALSHA per group of calls: its keys, then every call's arguments in order."""
        return pipelined(self.client, [
            ("EVALSHA", sha, len(group), *(call[0] for call in group),
             *(arg for call in group for arg in call[1:]))
            for group in groups])

    def get(self, keys: Sequence[str]) -> list[Entry | None]:
        """The entries at ``keys`` in one round trip: ``None`` where Redis holds nothing or a
        foreign entry (``redis_spanner.schemas.cache.foreign_kind``)."""
        if not keys:
            return []
        ceiling = self.ceiling()
        return [parse_entry(fields, ceiling) for fields in self.raw(keys)]

    def scan(self, pattern: str, count: int = 1000) -> Iterator[str]:
        """Every key matching ``pattern`` (SCAN: never blocks Redis like KEYS would). On a
        cluster, the cluster client runs SCAN on every primary, each with its own cursor."""
        try:
            yield from self.client.scan_iter(match=pattern, count=count)
        except REDIS_ERRORS as e:
            raise TransientError(f"redis unavailable ({self._where}): {type(e).__name__}") from e

    def raw(self, keys: Sequence[str]) -> list[dict[str, str] | str]:
        """The hash fields at each key, unparsed (empty where nothing is stored); for a key
        that holds another Redis type, the name of that type."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            replies = list(pipe.execute(raise_on_error=False))
            found: list[dict[str, str] | str] = [
                str(self.client.type(key)) if isinstance(reply, ResponseError) else reply
                for key, reply in zip(keys, replies, strict=True)
            ]
            if self._crypto is not None:
                found = [self._crypto.open_fields(k, f) for k, f in zip(keys, found, strict=True)]
            return found
        except REDIS_ERRORS as e:
            raise TransientError(f"redis unavailable ({self._where}): {type(e).__name__}") from e

    def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        try:
            return int(self.client.unlink(*keys))
        except REDIS_ERRORS as e:
            raise TransientError(f"redis unavailable ({self._where}): {type(e).__name__}") from e

    def acquire_leases(self, lease_keys: Sequence[str], token: str, ttl_ms: int) -> list[bool]:
        """Try to take a short fill lease per key (SET NX PX), in one round trip."""
        if not lease_keys:
            return []
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in lease_keys:
                pipe.set(key, token, nx=True, px=ttl_ms)
            return [bool(r) for r in pipe.execute()]
        except REDIS_ERRORS as e:
            raise TransientError(f"redis unavailable ({self._where}): {type(e).__name__}") from e

    def release_leases(self, lease_keys: Sequence[str], token: str) -> None:
        """Give back the leases this token still holds; an expired one is left alone."""
        self._scripted(LEASE_RELEASE, [(key, token) for key in lease_keys])


def guard_calls(ops: Sequence[CacheOp], *, value_ttl_ms: int, tombstone_ttl_ms: int,
                ceiling: int) -> list[tuple[str | int, ...]]:
    """The ``GUARD`` call (key first, then its arguments) for each op."""
    top = versions.encode(ceiling)
    return [
        (op.key, op.op, versions.encode(op.version), op.data or "",
         tombstone_ttl_ms if op.op == OP_INVALIDATE else value_ttl_ms, top)
        for op in ops
    ]


def guard_answers(ops: Sequence[CacheOp], replies: Sequence[Any]) -> list[Applied]:
    """The guard's reply for each op, read; an overwritten foreign entry is logged and counted."""
    out: list[Applied] = []
    for op, reply in zip(ops, replies, strict=True):
        applied, previous, foreign = reply
        if foreign:
            log.warning("overwrote a foreign entry (%s) at %s", foreign, op.key)
            metrics.FOREIGN_OVERWRITTEN.labels(foreign).inc()
        out.append(Applied(op, bool(applied), int(previous) if previous else None,
                           foreign or None))
    return out


@functools.cache
def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()
