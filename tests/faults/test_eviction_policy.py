"""The eviction policy the cache needs: the local stack's redis-server runs with it, and the
worker and the push server warn once at start when Redis has one that evicts tombstones first,
or say they could not check when CONFIG is refused (as on managed Redis)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.worker import SAFE_EVICTION, warn_if_unsafe_eviction
from redis_spanner.infra.local import faults

from tests.faults.commands import command, serve_args
from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

UNSAFE = ("volatile-ttl", "volatile-lru", "volatile-lfu", "volatile-random", "allkeys-random")


def test_local_redis_evicts_least_recently_used_keys_of_any_kind(
    own_redis: faults.OwnProcess,
) -> None:
    """A redis-server started by the local stack's launch runs with allkeys-lru."""
    with redis.Redis.from_url(own_redis.address, decode_responses=True) as client:
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}


def test_every_policy_that_evicts_tombstones_first_is_warned_about_once(
    own_redis: faults.OwnProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Each unsafe policy gets exactly one warning naming it; allkeys-lru, allkeys-lfu and
    noeviction get none."""
    cache = RedisCache(redis.Redis.from_url(own_redis.address, decode_responses=True),
                       cache_ttl_seconds=60, tombstone_ttl_seconds=60)
    for policy in (*UNSAFE, *SAFE_EVICTION):
        cache.client.config_set("maxmemory-policy", policy)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="redis_spanner"):
            warn_if_unsafe_eviction(cache)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        if policy in UNSAFE:
            assert len(warnings) == 1 and policy in warnings[0].getMessage()
        else:
            assert not warnings, policy
    cache.client.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("program", ["worker", "serve"])
def test_worker_and_server_warn_at_start(open_pipeline: Any, program: str) -> None:
    """``redis-spanner worker`` and ``serve`` check the policy at start: one warning line."""
    pipe: Pipeline = open_pipeline()
    with redis.Redis.from_url(pipe.redis.address) as admin:
        admin.config_set("maxmemory-policy", "volatile-ttl")
    with command(["worker"] if program == "worker" else serve_args()[0]) as running:
        wait_until(lambda: running.said("pulling"), timeout=60)  # once the check is done
        running.stop()
    [warning] = [line for line in running.lines if "maxmemory-policy" in line]
    assert "WARNING" in warning and "volatile-ttl" in warning


@pytest.mark.timeout(120)
def test_refused_config_get_is_reported_not_fatal(open_pipeline: Any) -> None:
    """Redis refusing CONFIG (an ACL without it, as managed Redis does): the worker says it
    could not check the policy, and runs."""
    pipe: Pipeline = open_pipeline()
    with redis.Redis.from_url(pipe.redis.address) as admin:
        admin.acl_setuser("default", enabled=True, nopass=True, commands=["+@all", "-config"],
                          keys=["*"], channels=["*"])
    with command(["worker"]) as running:
        wait_until(lambda: running.said("pulling"), timeout=60)
        running.stop()
    [line] = [line for line in running.lines if "maxmemory-policy" in line]
    assert "could not read" in line and "WARNING" not in line
