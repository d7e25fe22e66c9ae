"""mutmut does not mutate Lua, so the guard's script gets deliberate mutants of its own: each
one runs against the guard contract on real Redis and must make it fail. A mutant the contract
survived would be a rule of the guard that no test holds."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from redis_spanner.consumers import redis_cache
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.schemas.cache import GUARD

from tests.cache_contract import ops

MUTANTS = {
    "ties accepted (>= becomes >)": ("cur >= ARGV[2]", "cur > ARGV[2]"),
    "comparison inverted (>= becomes <=)": ("cur >= ARGV[2]", "cur <= ARGV[2]"),
    "guard skipped": ("elseif cur and cur >= ARGV[2] then", "elseif false then"),
    "refusal reported as applied": ("return {0, cur, ''}", "return {1, cur, ''}"),
    "refusal reports no version": ("return {0, cur, ''}", "return {0, '', ''}"),
    "old fields kept (no DEL)": ("redis.call('DEL', KEYS[1])\n", ""),
    "ops swapped": ("if ARGV[1] == 'inv' then", "if ARGV[1] ~= 'inv' then"),
    "tombstone stored as a value": ("'v', ARGV[2], 's', 't')", "'v', ARGV[2], 's', 'v')"),
    "value stored without its data": ("'s', 'v', 'd', ARGV[3])", "'s', 'v')"),
    "no expiry": ("redis.call('PEXPIRE', KEYS[1], ARGV[4])\n", ""),
    "previous version dropped": ("return {1, cur or '', foreign}", "return {1, '', foreign}"),
    "foreign-entry check skipped": ("if foreign ~= '' then\n  cur = false\nelseif cur", "if cur"),
    "foreign kind not reported": ("return {1, cur or '', foreign}", "return {1, cur or '', ''}"),
    "foreign version trusted": ("cur = false\nelseif", "elseif"),
    "future versions trusted": ("elseif cur > ARGV[5] then", "elseif false then"),
    "other types taken for empty keys": ("elseif kind ~= 'none' then", "elseif false then"),
    "a value without data taken for ours": ("held[2] == 'v' and redis.call",
                                            "held[2] == 'v' or redis.call"),
}


def contract_checks() -> list[Callable[[RedisCache], None]]:
    """The guard's example tests of the contract, plus the Redis-only TTL check, bound to a
    fresh suite. Leases are another script; the order-free property is left out for speed
    (a failing Hypothesis test shrinks for long), so the examples alone must kill every
    mutant."""
    from tests.redis.test_redis_cache import TestRedisCache

    suite = TestRedisCache()
    return [getattr(suite, name) for name, _ in inspect.getmembers(suite)
            if name.startswith("test_") and "lease" not in name and "any_order" not in name]


def test_every_mutant_is_a_real_change_of_the_script() -> None:
    """Each mutant's original text occurs in the guard, so no mutant is the script itself."""
    for name, (original, mutated) in MUTANTS.items():
        assert GUARD.count(original) == 1, name
        assert GUARD.replace(original, mutated) != GUARD, name


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_the_guard_contract_kills_the_mutant(
    mutant: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract on real Redis fails with the mutated guard (a check's assertion fails, or
    the check errors, as when a mutant's entry reads back as foreign or a write hits another
    type): the rule it breaks is held."""
    original, mutated = MUTANTS[mutant]
    monkeypatch.setattr(redis_cache, "GUARD", GUARD.replace(original, mutated))
    failures = []
    for check in contract_checks():
        redis_client.flushdb()
        try:
            check(RedisCache(redis_client, cache_ttl_seconds=60, tombstone_ttl_seconds=30))
        except Exception as e:  # the check passes on the real guard: any failure is the mutant's
            failures.append((check.__name__, e))
    assert failures, f"the mutant {mutant!r} survived the guard contract"


def test_the_order_free_property_alone_kills_the_tie_mutant(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The property over permutations and duplicates finds, by itself, that a guard
    accepting equal versions breaks "ties refused"."""
    from tests.redis.test_redis_cache import TestRedisCache

    original, mutated = MUTANTS["ties accepted (>= becomes >)"]
    monkeypatch.setattr(redis_cache, "GUARD", GUARD.replace(original, mutated))
    cache = RedisCache(redis_client, cache_ttl_seconds=60, tombstone_ttl_seconds=30)
    contract: Any = TestRedisCache.test_newest_version_wins_and_ties_are_refused_in_any_order
    # The same property, without shrinking and without the example database: only whether
    # it fails matters here, and the contract's own runs must not replay this mutant's failure.
    unshrunk = settings(database=None, phases=[Phase.generate], max_examples=150,
                        deadline=None, suppress_health_check=list(HealthCheck))(
        given(data=st.data(), writes=ops)(contract.hypothesis.inner_test))
    with pytest.raises(AssertionError):
        unshrunk(TestRedisCache(), cache)
