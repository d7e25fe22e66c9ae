"""Unexpected exceptions anywhere in the relay's loops, on the real emulators: each is logged
and retried, and the relay goes on publishing every row."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from redis_spanner.producers.outbox_store import SpannerOutbox
from redis_spanner.producers.relay import Relay, RelayConfig
from redis_spanner.producers.runner import build_relay
from redis_spanner.schemas import failpoints
from redis_spanner.schemas.settings import Settings

from tests.outbox_sql import SqlRow, insert, outbox_ids
from tests.waiting import wait_until

# One unexpected exception class per call the relay makes, each raised on the first calls.
STORE_FAULTS: dict[str, type[Exception]] = {
    "read": KeyError, "quarantine": AttributeError, "delete": ValueError,
    "backlog": ZeroDivisionError, "claim": TypeError, "live_relays": IndexError,
    "release": OSError,
}
FAILPOINTS = {"relay.after_read": "raise*2", "relay.after_publish": "raise*1",
              "relay.claim": "raise*2"}
TIMES = 1


class Flaky:
    """Stands in front of an object and raises an unexpected exception from each faulty
    method on its first ``TIMES`` calls; counts what it raised."""

    def __init__(self, inner: Any, faults: dict[str, type[Exception]]) -> None:
        self._inner = inner
        self._faults = faults
        self.raised: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in self._faults:
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                failing = self.raised[name] < TIMES
                if failing:
                    self.raised[name] += 1
            if failing:
                raise self._faults[name](f"injected into {name}")
            return method(*args, **kwargs)

        return call


@pytest.mark.timeout(120)
def test_no_exception_ends_the_relay_loops(
    provisioned: Settings, database: Any, received: Callable[[], set[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exceptions of classes no code path expects, raised by every outbox call, by Pub/Sub
    publishing and at the relay's failpoints (lease thread included), are retried: the relay
    keeps running, publishes every row, quarantines the poison one, and empties the outbox."""
    monkeypatch.setenv("RETRY_BACKOFF", "0")
    for name, action in FAILPOINTS.items():
        monkeypatch.setitem(failpoints._ACTIVE, name, action)
        monkeypatch.setitem(failpoints._PASSES, name, 0)
    _, publisher = build_relay(provisioned)
    store = Flaky(SpannerOutbox(database), STORE_FAULTS)
    flaky_publisher = Flaky(publisher, {"publish": RuntimeError})
    relay = Relay(store, flaky_publisher, RelayConfig(lease_seconds=3, backlog_every=0.1))
    good = insert(database, *[SqlRow(key_json=f'["acct-{n:03d}"]') for n in range(30)])
    (poison,) = insert(database, SqlRow(key_json="[[["))

    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            relay.run(stop)
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: set(good) <= received(), timeout=60, interval=0.2)
        wait_until(lambda: not outbox_ids(database), timeout=30)
        late = insert(database, SqlRow(), SqlRow())
        wait_until(lambda: set(late) <= received(), timeout=30, interval=0.2)
        assert thread.is_alive() and not failed
        assert poison not in received()
        assert relay.quarantined == 1
    finally:
        stop.set()
        thread.join(timeout=30)
        publisher.close()
    assert not failed, failed
    expected: Sequence[str] = [m for m in STORE_FAULTS if m != "release"]
    assert all(store.raised[m] == TIMES for m in expected), store.raised
    assert flaky_publisher.raised["publish"] == TIMES
    assert all(failpoints._PASSES[name] > int(action[len("raise*"):])
               for name, action in FAILPOINTS.items()), failpoints._PASSES
