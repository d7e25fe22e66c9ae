"""The consumer core over any order, duplication and batching of events: whatever the
delivery, each key ends at its newest version, and a cached value is the snapshot's.

``check_delivery`` is run with the in-memory cache (tests/unit/test_core.py) and with the Lua
guard on a real redis-server (tests/redis/test_core_on_redis.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Disposition, Inbound
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import Event, decode
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Action, Catalog, KeyTarget

from tests.fakes import MemoryDeadLetters, MemoryRows

ANY_DELIVERY = settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)

rows_ = st.one_of(st.tuples(st.just("Accounts"), st.sampled_from([("a",), ("b",)])),
                  st.tuples(st.just("Teams"), st.just((7,))),
                  st.tuples(st.just("Members"), st.sampled_from([(7, "amy"), (7, "bob")])))
events = st.lists(
    st.builds(lambda row, kind, version: (row, kind, version),
              rows_, st.sampled_from(EventType), st.integers(1, 6)),
    min_size=1, max_size=15,
)
"""Events over a few rows that share keys (a team's members list is fed by Teams and Members)
and a few versions, so duplicates, ties and supersession are frequent."""


def check_delivery(cache: Any, data: st.DataObject,
                   drawn: Sequence[tuple[tuple[str, tuple[object, ...]], EventType, int]]
                   ) -> None:
    """Deliver ``drawn`` in a drawn order, with redeliveries, in drawn batches, to one
    processor, and check the end state of every key against the newest-wins rule."""
    catalog = Catalog(f"p{uuid.uuid4().hex[:12]}", DEMO)
    snapshot = data.draw(st.integers(1, 8), label="snapshot version")
    rows = MemoryRows(version=snapshot)
    messages = []
    for n, ((table, row), kind, version) in enumerate(drawn):
        event = Event(f"0f8e2c1a-{n:04d}", kind, table, row, version)  # type: ignore[arg-type]
        messages.append(Inbound(f"m{n}", event.encode(), event.attributes()))
    targets: list[KeyTarget] = [t for m in messages for t in catalog.targets(decode(m.data))]
    for n, key in enumerate(sorted({t.cache_key.key for t in targets})):
        rows.values[key] = {"n": n}
    redelivered = data.draw(st.lists(st.sampled_from(messages), max_size=6), label="again")
    order = data.draw(st.permutations(messages + redelivered), label="order")
    cuts = sorted(data.draw(st.sets(st.integers(1, len(order)), max_size=4), label="cuts"))
    dead = MemoryDeadLetters()
    processor = Processor(catalog, cache, rows, dead, retry_attempts=1, retry_seconds=1)
    for start, end in zip([0, *cuts], [*cuts, len(order)], strict=True):
        batch = order[start:end]
        outcomes = processor.process(batch)
        assert [o.message for o in outcomes] == batch
        assert all(o.disposition is Disposition.ACK for o in outcomes), outcomes
    assert not dead.sent
    keys = sorted({t.cache_key.key for t in targets})
    for key, entry in zip(keys, cache.get(keys), strict=True):
        assert entry is not None, f"{key} was never written"
        mine = [t for t in targets if t.cache_key.key == key]
        newest = max(t.version for t in mine)
        rewarmed = {t.version for t in mine if t.action is Action.REWARM}
        invalidated = {t.version for t in mine if t.action is Action.INVALIDATE}
        tombstone = (True, newest, None)
        value = (False, snapshot, rows.values[key])
        got = (entry.tombstone, entry.version, entry.value())
        if not rewarmed or snapshot < newest:
            assert got == tombstone, f"{key}: {got} (newest {newest}, snapshot {snapshot})"
        elif newest in rewarmed and (snapshot > newest or newest not in invalidated):
            assert got == value, f"{key}: {got} (newest {newest} rewarms at {snapshot})"
        else:
            assert got in (tombstone, value), f"{key}: {got}"
