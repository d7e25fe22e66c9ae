"""Keys of the namespace holding what the guard did not write, on a real redis-server.

Whatever an outside client or an older release left at a key, the guard answers for that key
alone: it overwrites the entry, says which kind it found, and never fails the batch. Readers
see such an entry as a miss."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.schemas import versions
from redis_spanner.schemas.cache import (
    FOREIGN_BAD_STATE,
    FOREIGN_BAD_VERSION,
    FOREIGN_FUTURE,
    FOREIGN_TYPE,
    FOREIGN_UNVERSIONED,
    CacheOp,
    foreign_kind,
)

HOUR = 3_600_000_000_000


def _now() -> int:
    return time.time_ns()


# name -> (plant the entry, the kind the guard must report)
PLANTS: dict[str, tuple[Callable[[Any, str], Any], str]] = {
    "string": (lambda r, k: r.set(k, "plain"), FOREIGN_TYPE),
    "list": (lambda r, k: r.rpush(k, "a", "b"), FOREIGN_TYPE),
    "set": (lambda r, k: r.sadd(k, "a"), FOREIGN_TYPE),
    "zset": (lambda r, k: r.zadd(k, {"a": 1.0}), FOREIGN_TYPE),
    "stream": (lambda r, k: r.xadd(k, {"f": "v"}), FOREIGN_TYPE),
    "hash without a version": (lambda r, k: r.hset(k, mapping={"d": "{}", "s": "v"}),
                               FOREIGN_UNVERSIONED),
    "version not a number": (lambda r, k: r.hset(k, mapping={"v": "abc", "s": "t"}),
                             FOREIGN_BAD_VERSION),
    "version of the wrong width": (lambda r, k: r.hset(k, mapping={"v": "12", "s": "t"}),
                                   FOREIGN_BAD_VERSION),
    "negative version": (lambda r, k: r.hset(k, mapping={"v": "-" + "9" * 19, "s": "t"}),
                         FOREIGN_BAD_VERSION),
    "version far in the future": (
        lambda r, k: r.hset(k, mapping={"v": versions.encode(_now() + 2 * HOUR), "s": "t"}),
        FOREIGN_FUTURE),
    "largest version": (lambda r, k: r.hset(k, mapping={"v": "9" * 20, "s": "t"}),
                        FOREIGN_FUTURE),
    "no state": (lambda r, k: r.hset(k, mapping={"v": versions.encode(5)}), FOREIGN_BAD_STATE),
    "value without data": (lambda r, k: r.hset(k, mapping={"v": versions.encode(5), "s": "v"}),
                           FOREIGN_BAD_STATE),
}


def _overwritten(kind: str) -> float:
    value = REGISTRY.get_sample_value("redis_spanner_cache_foreign_overwritten_total",
                                      {"kind": kind})
    return value or 0.0


@pytest.fixture
def key(settings: Any) -> str:
    return f"{settings.namespace}:account:{{Accounts:{uuid.uuid4().hex[:8]}}}"


@pytest.mark.parametrize("op", ["invalidate", "set"])
@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_guard_overwrites_each_foreign_kind_without_failing_the_batch(
    cache: RedisCache, key: str, plant: str, op: str,
) -> None:
    """Every kind of foreign entry is overwritten by any op, reported with its kind (the same
    kind the Python reader assigns), and the batch's other ops apply as usual."""
    write, kind = PLANTS[plant]
    counted = _overwritten(kind)
    write(cache.client, key)
    before = cache.raw([key])[0]
    assert foreign_kind(before, cache.ceiling()) == kind
    assert cache.get([key]) == [None]  # readers see a miss
    neighbour = key + "-n"
    version = _now() - HOUR
    ours = (CacheOp.invalidate(key, version) if op == "invalidate"
            else CacheOp.set(key, version, {"Owner": "o"}))
    results = cache.apply([ours, CacheOp.invalidate(neighbour, version)])
    assert [(r.applied, r.previous, r.foreign) for r in results] == [
        (True, None, kind), (True, None, None)]
    [entry] = cache.get([key])
    assert entry is not None and entry.version == version
    assert entry.tombstone is (op == "invalidate")
    assert cache.client.pttl(key) > 0
    assert _overwritten(kind) == counted + 1
    cache.delete([key, neighbour])


def test_a_version_within_the_skew_is_honoured(cache: RedisCache, key: str) -> None:
    """A genuine entry slightly ahead of this clock (within the skew) still refuses older
    writes: only versions beyond the skew count as foreign."""
    ahead = _now() + HOUR // 2
    cache.apply([CacheOp.invalidate(key, ahead)])
    [result] = cache.apply([CacheOp.invalidate(key, _now())])
    assert (result.applied, result.previous, result.foreign) == (False, ahead, None)
    cache.delete([key])


_fields = st.dictionaries(
    st.sampled_from(["v", "s", "d", "x"]),
    st.one_of(st.sampled_from(["t", "v", "", "{}"]), st.text(max_size=22),
              st.integers(0, 10**20 - 1).map(versions.encode),
              st.integers(0, 10**19).map(str)),
    min_size=1)


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(fields=_fields)
def test_guard_and_reader_agree_on_any_hash(cache: RedisCache, key: str,
                                            fields: dict[str, str]) -> None:
    """For any hash at a key, the guard never errors, and it overwrites exactly what the
    Python reader calls foreign or older; what it keeps is a real entry it saw as newer."""
    cache.client.delete(key)
    cache.client.hset(key, mapping=dict(fields.items()))
    ceiling = cache.ceiling()
    kind = foreign_kind(fields, ceiling)
    held = cache.get([key])[0]
    version = _now() - HOUR
    [result] = cache.apply([CacheOp.invalidate(key, version)])
    assert result.foreign == kind
    if kind is None:
        assert held is not None
        assert result.applied is (held.version < version)
        assert result.previous == held.version
    else:
        assert held is None and result.applied
    cache.client.delete(key)


def test_chaos_foreign_entries_are_overwritten_by_the_running_pipeline(
    provisioned: Any, database: Any, cache: RedisCache, catalog: Any, running: Any,
    worker: Any,
) -> None:
    """The demo's foreign-entries fault plants a different foreign kind on several cached
    keys and publishes a change for each; the running worker overwrites every one of them,
    so verify then finds no foreign entry."""
    import random

    from google.cloud import pubsub_v1  # type: ignore[attr-defined]
    from redis_spanner.consumers.readthrough import ReadThrough
    from redis_spanner.consumers.spanner_rows import SpannerRows
    from redis_spanner.consumers.verify import verify
    from redis_spanner.infra.demo.chaos import plant_foreign
    from redis_spanner.infra.demo.workload import seed_accounts

    from tests.waiting import wait_until

    ids = [f"c-{n}" for n in range(8)]
    seed_accounts(database, ids)
    rows = SpannerRows(database)
    reader = ReadThrough(catalog, cache, rows)
    reader.get_many([reader.key("account", i) for i in ids])
    publisher = pubsub_v1.PublisherClient()
    try:
        detail = plant_foreign(provisioned.require_redis_url(), provisioned.topic_path,
                               publisher, random.Random(3))
    finally:
        publisher.stop()
    planted = detail.split(", ")
    assert 3 <= len(planted) == len(set(planted))
    assert len(verify(cache, catalog, rows).foreign) == len(planted)
    running(worker.run)
    wait_until(lambda: not verify(cache, catalog, rows).foreign, timeout=60)
