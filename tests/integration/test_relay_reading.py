"""How the relay reads and publishes a backlog, on the real emulators: full reads go on from
the last row while that read's rows are published and deleted, without publishing a row twice
or passing over one, and Publish requests refused for one message are split until only that
message is refused."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from google.cloud.spanner_v1 import param_types
from redis_spanner.producers.outbox import OUTBOX_COLUMNS, OUTBOX_TABLE, outbox_values
from redis_spanner.producers.outbox_rows import OutboxRow
from redis_spanner.producers.outbox_store import SpannerOutbox
from redis_spanner.producers.publisher import PubSubPublisher
from redis_spanner.producers.relay import Relay, RelayConfig
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.settings import Settings

from tests.integration.test_pipeline import outbox_count
from tests.waiting import wait_until

BACKDATED = """
INSERT INTO Outbox (Shard, EventId, EventType, TableName, KeyJson, SchemaVersion, CommitTs)
VALUES (@shard, @event_id, 'row.changed', 'Accounts', '["late"]', 1,
        TIMESTAMP '2001-01-01T00:00:00Z')
"""


def insert_rows(database: Any, count: int) -> list[str]:
    """``count`` outbox rows as ``record`` writes them, committed 500 to a transaction."""
    ids: list[str] = []
    for start in range(0, count, 500):
        rows = [outbox_values(EventType.ROW_CHANGED, "Accounts", (f"r-{i:05d}",))
                for i in range(start, min(count, start + 500))]
        ids += [row[OUTBOX_COLUMNS.index("EventId")] for row in rows]

        def insert(tx: Any, rows: list[Any] = rows) -> None:
            tx.insert(OUTBOX_TABLE, columns=OUTBOX_COLUMNS, values=rows)

        run_transaction(database, insert)
    return ids


class SlowDeletes(SpannerOutbox):
    """The real store, with each delete taking ``seconds`` longer (a busy Spanner)."""

    def __init__(self, database: Any, seconds: float) -> None:
        super().__init__(database)
        self.seconds = seconds

    def delete(self, rows: list[OutboxRow]) -> None:
        time.sleep(self.seconds)
        super().delete(rows)


@pytest.mark.parametrize("delete_delay", [0.0, 0.4])
def test_a_backlog_read_in_full_reads_is_published_once_per_row_and_deleted(
    provisioned: Settings, database: Any, running: Any, delete_delay: float
) -> None:
    """3,000 rows read 250 at a time, with deletes as fast as Spanner makes them and with
    deletes lagging far behind the reads: each read goes on from the previous one's last
    row, and a read from the start skips rows published and not yet deleted, so every row
    is published exactly once and the outbox empties."""
    ids = insert_rows(database, 3000)
    published: Counter[str] = Counter()
    lock = threading.Lock()

    def count(rows: list[OutboxRow]) -> None:
        with lock:
            published.update(r.event_id for r in rows)

    publisher = PubSubPublisher(provisioned.topic_path)
    relay = Relay(SlowDeletes(database, delete_delay), publisher, RelayConfig(batch=250),
                  on_published=count)
    running(relay.run)
    wait_until(lambda: outbox_count(database) == 0, timeout=60)
    publisher.close()
    assert set(published) == set(ids)
    assert max(published.values()) == 1


def test_a_row_committed_behind_the_reading_position_is_still_published(
    provisioned: Settings, database: Any, running: Any
) -> None:
    """A row committed, while the relay works through a backlog, at a key behind the
    position it reads from (the first shard, an event id sorting first; with a literal
    CommitTs in the past, as a hand-written SQL writer might): the relay's next read from the
    start (once it has caught up) finds the row, so it is published and deleted, not passed
    over."""
    ids = insert_rows(database, 1500)
    late: list[str] = []
    published: set[str] = set()

    def count(rows: list[OutboxRow]) -> None:
        published.update(r.event_id for r in rows)
        if not late:  # behind the position the relay has read to
            late.append("00000000-late")
            run_transaction(database, lambda tx: tx.execute_update(
                BACKDATED, params={"shard": 0, "event_id": late[0]},
                param_types={"shard": param_types.INT64, "event_id": param_types.STRING}))

    publisher = PubSubPublisher(provisioned.topic_path)
    relay = Relay(SpannerOutbox(database), publisher, RelayConfig(batch=200),
                  on_published=count)
    running(relay.run)
    wait_until(lambda: outbox_count(database) == 0, timeout=60)
    publisher.close()
    assert set(ids) | set(late) == published


def messages(count: int) -> list[OutboxRow]:
    return [OutboxRow(i % 16, f"ev-{i:05d}", b'{"n":%d}' % i, {"event_id": f"ev-{i:05d}"},
                      None)  # type: ignore[arg-type]
            for i in range(count)]


def test_a_message_pubsub_refuses_is_split_out_of_its_request_and_the_rest_published(
    provisioned: Settings,
) -> None:
    """2,500 messages go out as three Publish requests; one message Pub/Sub refuses
    (empty: no data, no attributes) fails its whole request, which is halved until that
    message alone is refused: it comes back as poison naming Pub/Sub's answer, and every
    other message is published."""
    rows = messages(2500)
    rows[1234] = OutboxRow(2, "ev-empty", b"", {}, None)  # type: ignore[arg-type]
    publisher = PubSubPublisher(provisioned.topic_path)
    try:
        refused = publisher.publish(rows, threading.Event())
    finally:
        publisher.close()
    assert [r.event_id for r in refused] == ["ev-empty"]
    assert refused[0].reason.startswith("refused-by-pubsub: InvalidArgument")


def test_a_refusal_of_every_message_is_the_topics_problem_not_the_rows(
    provisioned: Settings,
) -> None:
    """When Pub/Sub refuses every message of a publish, no row is made poison: the publish
    fails as transient and the rows stay pending."""
    rows = [OutboxRow(1, f"ev-{i}", b"", {}, None) for i in range(3)]  # type: ignore[arg-type]
    publisher = PubSubPublisher(provisioned.topic_path)
    try:
        with pytest.raises(TransientError, match="InvalidArgument"):
            publisher.publish(rows, threading.Event())
    finally:
        publisher.close()
