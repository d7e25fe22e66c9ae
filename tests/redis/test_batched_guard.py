"""The batched guard (many keys in one EVALSHA, ``schemas.cache.batched``) answers and writes
exactly as the single-key guard run once per key, in order, on a real redis-server."""

from __future__ import annotations

from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_spanner.consumers.redis_cache import BATCH_KEYS, RedisCache, guard_calls
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import (
    GUARD,
    LEASE_RELEASE,
    OP_INVALIDATE,
    OP_SET,
    CacheOp,
    batched,
)

NOW = versions.ceiling(0)
TOP = versions.ceiling(60)

# What a key may hold before the batch: nothing, a guarded entry, or something foreign.
BEFORE = st.one_of(
    st.none(),
    st.builds(lambda v, s: {"v": versions.encode(v), "s": s, "d": "[1]"},
              st.integers(1, 9), st.sampled_from(["t", "v"])),
    st.just({"v": "9" * 20, "s": "t"}),
    st.just({"v": "x" * 20, "s": "t"}),
    st.just({"d": "{}"}),
    st.just("a string"),
)
OPS = st.lists(st.tuples(st.integers(0, 5), st.sampled_from([OP_INVALIDATE, OP_SET]),
                         st.integers(1, 9)), min_size=1, max_size=30)


def _seed(client: redis.Redis, key: str, held: Any) -> None:
    if isinstance(held, str):
        client.set(key, held)
    elif held is not None:
        client.hset(key, mapping=held)


def _state(client: redis.Redis, keys: list[str]) -> list[Any]:
    return [client.hgetall(k) if client.type(k) == "hash" else client.get(k) for k in keys]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.lists(BEFORE, min_size=6, max_size=6), ops=OPS)
def test_batched_guard_matches_the_guard_run_key_by_key(
    redis_client: redis.Redis, before: list[Any], ops: list[tuple[int, str, int]],
) -> None:
    """Same replies and same entries afterwards, for any mix of empty, guarded and foreign
    keys, and for a batch that names one key several times (the calls apply in order)."""
    redis_client.flushdb()
    single, many = ([f"{side}:{i}" for i in range(6)] for side in ("one", "many"))
    for keys in (single, many):
        for key, held in zip(keys, before, strict=True):
            _seed(redis_client, key, held)

    def calls(keys: list[str]) -> list[tuple[str | int, ...]]:
        return [(keys[k], op, versions.encode(v), "[2]" if op == OP_SET else "", 60_000,
                 versions.encode(TOP)) for k, op, v in ops]

    one_by_one = [redis_client.eval(GUARD, 1, *call) for call in calls(single)]
    group = calls(many)
    together = redis_client.eval(batched(GUARD, 5), len(group), *(c[0] for c in group),
                                 *(a for c in group for a in c[1:]))
    assert together == one_by_one
    assert _state(redis_client, many) == _state(redis_client, single)


def test_a_batch_larger_than_one_call_is_answered_in_order(redis_cache: RedisCache) -> None:
    """More keys than one call takes: every op still gets its own answer, in order, and the
    versions held afterwards are the batch's."""
    n = BATCH_KEYS * 2 + 7
    redis_cache.apply([CacheOp.invalidate(f"k{i}", 5) for i in range(0, n, 2)])
    answers = redis_cache.apply([CacheOp.invalidate(f"k{i}", 3 + i % 5) for i in range(n)])
    assert [a.op.key for a in answers] == [f"k{i}" for i in range(n)]
    for i, answer in enumerate(answers):
        version = 3 + i % 5
        held = 5 if i % 2 == 0 else None
        assert answer.previous == held
        assert answer.applied == (held is None or version > held)
    assert len(guard_calls([a.op for a in answers], value_ttl_ms=1, tombstone_ttl_ms=1,
                           ceiling=NOW)) == n


def test_batched_lease_release_frees_only_leases_still_held(redis_client: redis.Redis) -> None:
    """The lease release, batched: a lease held by the token goes, one taken over stays."""
    redis_client.set("lease:a", "mine")
    redis_client.set("lease:b", "theirs")
    released = redis_client.eval(batched(LEASE_RELEASE, 1), 3, "lease:a", "lease:b", "lease:c",
                                 "mine", "mine", "mine")
    assert released == [1, 0, 0]
    assert redis_client.get("lease:b") == "theirs"
    assert not redis_client.exists("lease:a")
