"""The consumer core's order-free property with the Lua guard on a real redis-server."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.schemas.events import EventType

from tests.core_property import ANY_DELIVERY, check_delivery, events


@ANY_DELIVERY
@given(data=st.data(), drawn=events)
def test_any_delivery_order_ends_at_the_newest_version_on_redis(
    redis_cache: RedisCache, data: st.DataObject,
    drawn: list[tuple[tuple[str, tuple[object, ...]], EventType, int]],
) -> None:
    """On real Redis, whatever the order, redelivery and batching of events, each key ends at
    its newest event's version (or the snapshot's value when a rewarm was newest). Each
    example uses its own key namespace."""
    check_delivery(redis_cache, data, drawn)
