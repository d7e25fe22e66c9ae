"""Change-stream records become the outbox's envelope; the relay's checkpoints and retention."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from redis_spanner.producers.changestream import (
    ChangeMessage,
    ChildPartition,
    ChildPartitions,
    DataChange,
    Heartbeat,
    Record,
    event_id_for,
    messages,
    records,
)
from redis_spanner.producers.changestream_query import parse_duration
from redis_spanner.producers.changestream_reader import ChangeStreamRelay, ReaderConfig
from redis_spanner.producers.partition_store import ROOT, Partition
from redis_spanner.producers.publisher import Message
from redis_spanner.schemas import versions
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import decode
from redis_spanner.schemas.errors import CheckpointExpired, TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Action, Catalog

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
TABLES = frozenset({"Accounts", "Members"})
ORDER = {"Accounts": ["AccountId"], "Members": ["TeamId", "MemberId"]}


def data_record(table: str, mod_type: str, keys: list[dict[str, Any]],
                types: dict[str, str], ts: dt.datetime = T0) -> dict[str, Any]:
    """A data-change record as the adapter hands it over (the emulator's shape)."""
    return {
        "commit_timestamp": ts, "record_sequence": "00000000", "server_transaction_id": "1",
        "is_last_record_in_transaction_in_partition": True, "table_name": table,
        "column_types": [{"name": n, "type": {"code": t}, "is_primary_key": True,
                          "ordinal_position": i + 1} for i, (n, t) in enumerate(types.items())]
        + [{"name": "Role", "type": {"code": "STRING"}, "is_primary_key": False,
            "ordinal_position": 9}],
        "mods": [{"keys": k, "new_values": {}, "old_values": {}} for k in keys],
        "mod_type": mod_type, "value_capture_type": "NEW_ROW",
    }


def test_records_of_every_kind_are_parsed_from_one_change_record() -> None:
    """Data changes, heartbeats and child partitions (with their parents) come out of one
    ChangeRecord value, JSON given as text or as parsed values alike."""
    value = [{
        "data_change_record": [data_record("Accounts", "UPDATE", [{"AccountId": "a-1"}],
                                           {"AccountId": "STRING"})],
        "heartbeat_record": [{"timestamp": T0}],
        "child_partitions_record": [{
            "start_timestamp": T0, "record_sequence": "1",
            "child_partitions": [{"token": "c", "parent_partition_tokens": ["p", "q"]}]}],
    }]
    value[0]["data_change_record"][0]["mods"][0]["keys"] = '{"AccountId": "a-1"}'
    change, beat, children = records(value)
    assert isinstance(change, DataChange) and change.keys == ({"AccountId": "a-1"},)
    assert beat == Heartbeat(T0)
    assert children == ChildPartitions(T0, (ChildPartition("c", ("p", "q")),))


@pytest.mark.parametrize(("mod_type", "expected"), [
    ("INSERT", EventType.ROW_CHANGED), ("UPDATE", EventType.ROW_CHANGED),
    ("DELETE", EventType.ROW_DELETED)])
def test_each_modified_row_becomes_the_outbox_envelope_at_its_commit_timestamp(
    mod_type: str, expected: EventType
) -> None:
    """Every row of a record is one event the consumer decodes like an outbox event: its type
    from the mod (deletes invalidate), its version the commit timestamp to the nanosecond, its
    key in primary-key order with INT64 parts as integers, tagged with its source."""
    change = records([{"data_change_record": [data_record(
        "Members", mod_type, [{"MemberId": "m-1", "TeamId": "7"}, {"MemberId": "m-2",
                                                                  "TeamId": "8"}],
        {"MemberId": "STRING", "TeamId": "INT64"})]}])[0]
    assert isinstance(change, DataChange)
    sent = messages(change, TABLES, ORDER)
    events = [decode(m.data, now_ns=versions.from_datetime(T0)) for m in sent]
    assert [e.key for e in events] == [(7, "m-1"), (8, "m-2")]
    assert {e.type for e in events} == {expected}
    assert {e.version for e in events} == {versions.from_datetime(T0)}
    assert all(m.attributes["source"] == "changestream" for m in sent)
    assert all(m.attributes["event_id"] == e.event_id for m, e in zip(sent, events, strict=True))
    catalog = Catalog("t", DEMO)
    actions = {t.action for e in events for t in catalog.targets(e)}
    if expected is EventType.ROW_DELETED:
        assert actions == {Action.INVALIDATE}


def test_tables_outside_the_catalog_publish_nothing() -> None:
    """A change to a table no key template names (the relay's own tables, say) is skipped."""
    change = records([{"data_change_record": [data_record(
        "ChangeStreamPartition", "UPDATE", [{"Token": "x"}], {"Token": "STRING"})]}])[0]
    assert isinstance(change, DataChange)
    assert messages(change, TABLES, ORDER) == []


def test_event_ids_are_the_same_for_the_same_change_and_differ_otherwise() -> None:
    """Reading a record twice yields the same event id; another row, table or commit
    timestamp yields another, so duplicates are recognisable and distinct changes are not."""
    base = event_id_for("Accounts", ["a-1"], 5)
    assert base == event_id_for("Accounts", ["a-1"], 5)
    others = {event_id_for("Accounts", ["a-2"], 5), event_id_for("Accounts", ["a-1"], 6),
              event_id_for("Teams", ["a-1"], 5), event_id_for("Accounts", [1], 5)}
    assert base not in others and len(others) == 4


@pytest.mark.parametrize(("text", "seconds"), [("1d", 86400), ("36h", 129600), ("7d", 604800),
                                               ("1440m", 86400), ("'86400s'", 86400)])
def test_retention_periods_parse(text: str, seconds: int) -> None:
    """Spanner's retention_period forms become durations."""
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


class FakeSource:
    stream = "CacheChanges"

    def __init__(self, script: dict[str | None, list[Record]]) -> None:
        self.script = script
        self.starts: list[dt.datetime] = []

    def read(self, token: str | None, start: dt.datetime, end: dt.datetime
             ) -> Iterator[Record]:
        self.starts.append(start)
        yield from self.script.get(token, [])


class FakePartitions:
    def __init__(self, checkpoint: dt.datetime) -> None:
        self.rows = {ROOT: Partition(ROOT, checkpoint)}
        self.finished: set[str] = set()
        self.checkpoints: list[tuple[str, dt.datetime, bool]] = []
        self.parents: dict[str, tuple[str, ...]] = {}

    def ensure_root(self) -> None:
        pass

    def claim(self, owner: str, lease_seconds: float) -> list[Partition]:
        return [p for t, p in self.rows.items() if t not in self.finished
                and all(q in self.finished for q in self.parents.get(t, ()))]

    def add_children(self, children: Sequence[ChildPartition], start: dt.datetime) -> None:
        for child in children:
            self.rows.setdefault(child.token, Partition(child.token, start))
            self.parents[child.token] = child.parents

    def checkpoint(self, owner: str, token: str, ts: dt.datetime, *, finished: bool = False
                   ) -> bool:
        self.checkpoints.append((token, ts, finished))
        self.rows[token] = Partition(token, ts)
        if finished:
            self.finished.add(token)
        return True

    def release(self, owner: str) -> None:
        pass

    def oldest_checkpoint(self) -> dt.datetime | None:
        return min((p.checkpoint for t, p in self.rows.items() if t not in self.finished),
                   default=None)


class FakePending:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def __len__(self) -> int:
        return 1

    def wait(self) -> list[str]:
        if self.fail:
            raise TransientError("pubsub down")
        return ["1"]


class FakePublisher:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[Message] = []

    def submit(self, messages: Sequence[Message]) -> Any:
        self.sent.extend(messages)
        fail = self.failures > 0
        self.failures -= fail
        return FakePending(fail)


def relay(source: FakeSource, partitions: FakePartitions, publisher: FakePublisher,
          retention: dt.timedelta = dt.timedelta(days=1)) -> ChangeStreamRelay:
    config = ReaderConfig(TABLES, ORDER, retention, lease_seconds=2.0, window_seconds=0.05,
                          checkpoint_every=0.0)
    return ChangeStreamRelay(source, partitions, publisher, config)


def test_a_checkpoint_beyond_retention_stops_the_relay_with_a_clear_error() -> None:
    """A partition whose checkpoint is older than the stream's retention is an error naming
    the stream, the retention and the way out, never a silent skip of the lost changes."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    source = FakeSource({})
    reader = relay(source, FakePartitions(old), FakePublisher())
    with pytest.raises(CheckpointExpired, match=r"CacheChanges.*retention of 1 day"):
        reader.run(threading.Event())
    assert source.starts == []


def test_a_failed_publish_never_moves_the_checkpoint_and_the_partition_is_read_again() -> None:
    """When Pub/Sub does not confirm, the checkpoint stays where it was and reading resumes
    from it, so the change is published again; children are read after their parent ends."""
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(seconds=1)
    change = DataChange(later, "0", "1", "Accounts", "UPDATE", {"AccountId": "STRING"},
                        ({"AccountId": "a-1"},))
    source = FakeSource({None: [change, ChildPartitions(later, (ChildPartition("c", ()),))],
                         "c": []})
    partitions = FakePartitions(now)
    publisher = FakePublisher(failures=1)
    reader = relay(source, partitions, publisher)
    stop = threading.Event()
    thread = threading.Thread(target=reader.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
        while (not any(c[0] == "c" for c in partitions.checkpoints)
               and dt.datetime.now(dt.UTC) < deadline):
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert ROOT in partitions.finished
    sent = [m for m in publisher.sent if isinstance(m, ChangeMessage)]
    assert len(sent) == 2 and sent[0].event_id == sent[1].event_id
    assert source.starts[:2] == [now, now]
    root_saves = [c for c in partitions.checkpoints if c[0] == ROOT]
    assert root_saves[0][1] == later and all(ts >= now for _, ts, _ in root_saves)
    assert any(token == "c" for token, _, _ in partitions.checkpoints)


@pytest.mark.parametrize(("ddl", "drift"), [
    ("CREATE CHANGE STREAM CacheChanges FOR Accounts, Members, Teams", False),
    ("CREATE CHANGE STREAM cachechanges FOR ALL", False),
    ("CREATE CHANGE STREAM CacheChanges FOR Accounts(Balance), Teams(Name, Id), Members()",
     False),
    ("CREATE CHANGE STREAM CacheChanges FOR Accounts, Teams OPTIONS (retention_period='36h')",
     True),
    ("CREATE CHANGE STREAM CacheChanges FOR Accounts, Members, Teams, Audit", True),
    ("CREATE CHANGE STREAM Other FOR Accounts", False),
])
def test_provision_warns_when_the_stream_watches_other_tables_than_the_catalog(
    ddl: str, drift: bool
) -> None:
    """An existing stream that misses a catalog table (or watches more) is reported, since
    provisioning never alters it; a stream over all tables, or column lists, are fine."""
    from redis_spanner.infra.provision.spanner import stream_drift
    from redis_spanner.schemas.settings import Settings

    warnings = stream_drift(Settings(), [ddl])
    assert bool(warnings) == drift
    assert all("ALTER CHANGE STREAM CacheChanges" in w for w in warnings)


def test_the_oldest_checkpoints_age_is_reported_as_the_margin_before_retention() -> None:
    """The relay exports how far its slowest unfinished partition is behind, the number an
    operator watches against the stream's retention."""
    from prometheus_client import REGISTRY

    def age() -> float:
        value = REGISTRY.get_sample_value("redis_spanner_changestream_checkpoint_age_seconds")
        return value or 0.0

    behind = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    partitions = FakePartitions(behind)
    reader = relay(FakeSource({}), partitions, FakePublisher())
    stop = threading.Event()
    thread = threading.Thread(target=reader.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
        while (age() < 3000
               and dt.datetime.now(dt.UTC) < deadline):
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert 3590 < age() < 3700
