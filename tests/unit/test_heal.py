"""The heal loop's bound, with in-memory adapters: only a letter that fails on its own while
Redis takes writes beside its keys is counted; at the bound it is dead-lettered with its story."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from prometheus_client import REGISTRY
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.dead_letters import HEAL_ATTEMPTS
from redis_spanner.consumers.heal import Healer, probe_writes
from redis_spanner.consumers.messages import Disposition, Inbound
from redis_spanner.consumers.pubsub import FORWARDED_DELIVERY_COUNT
from redis_spanner.schemas.cache import Applied, CacheOp
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import PermanentError, TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog

from tests.fakes import MemoryCache, MemoryDeadLetters, MemoryRows

CATALOG = Catalog("rsc", DEMO)
SOURCE = "projects/p/subscriptions/consumer-heal"


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_BACKOFF", "0")


class Refusing(MemoryCache):
    """Refuses every batch that writes a key holding one of ``refused``, or all while down."""

    def __init__(self, *refused: str) -> None:
        super().__init__()
        self.refused = set(refused)
        self.down = False

    def apply(self, ops: Sequence[CacheOp]) -> list[Applied]:
        if self.down or any(r in op.key for op in ops for r in self.refused):
            raise TransientError("redis refused a write: NOPERM")
        return super().apply(ops)


class Topic:
    def __init__(self) -> None:
        self.published: list[tuple[bytes, dict[str, str]]] = []

    def publish(self, data: bytes, attributes: Mapping[str, str]) -> str:
        self.published.append((data, dict(attributes)))
        return str(len(self.published))


class DeadLetters(MemoryDeadLetters):
    def __init__(self) -> None:
        super().__init__()
        self.stories: list[tuple[str | None, int | None]] = []

    def send(self, message: Inbound, error: PermanentError, *, source: str | None = None,
             attempts: int | None = None) -> None:
        super().send(message, error)
        self.stories.append((source, attempts))


def letter(account: str, n: int, attempts: int | None = None) -> Inbound:
    event = Event(f"0f8e2c1a-{n:04d}", EventType.ROW_CHANGED, "Accounts", (account,), 100 + n)
    attributes = {**event.attributes(), FORWARDED_DELIVERY_COUNT: "5"}
    if attempts is not None:
        attributes[HEAL_ATTEMPTS] = str(attempts)
    return Inbound(f"m{n}", event.encode(), attributes)


def healer(cache: MemoryCache, max_attempts: int = 3) -> tuple[Healer, Topic, DeadLetters]:
    topic, dead = Topic(), DeadLetters()
    processor = Processor(CATALOG, cache, MemoryRows(), dead, retry_attempts=2, retry_seconds=5)
    return Healer(processor, CATALOG, topic, dead, probe_writes(cache, "rsc"),
                  max_attempts=max_attempts, source=SOURCE), topic, dead


def counted(result: str) -> float:
    return REGISTRY.get_sample_value("redis_spanner_consumer_heal_attempts_total",
                                     {"result": result}) or 0.0


def test_an_outage_counts_nothing() -> None:
    """While Redis takes no write at all, failing letters are released as before: nothing
    republished, nothing dead-lettered, whatever count they carry."""
    cache = Refusing()
    cache.down = True
    heal, topic, dead = healer(cache)
    outcomes = heal.process([letter("a", 1, attempts=2), letter("b", 2)])
    assert [o.disposition for o in outcomes] == [Disposition.NACK] * 2
    assert not topic.published and not dead.sent


def test_a_letter_failing_on_its_own_is_requeued_with_its_count_beside_applied_ones() -> None:
    """A batch fails as a whole; tried alone, the innocent letters apply and are acked, and only
    the letter whose keys Redis refuses is counted: republished with ``heal_attempts`` one
    higher, its delivery acked, while a probe key in its slot took a write."""
    cache = Refusing(":account:{Accounts:stuck}")
    heal, topic, dead = healer(cache)
    before = counted("requeued")
    batch = [letter("fine-1", 1), letter("stuck", 2, attempts=1), letter("fine-2", 3)]
    outcomes = heal.process(batch)
    assert [o.disposition for o in outcomes] == [Disposition.ACK] * 3
    assert outcomes[0].changed and outcomes[2].changed and not outcomes[1].changed
    assert isinstance(outcomes[1].error, TransientError)
    [(data, attributes)] = topic.published
    assert data == batch[1].data
    assert attributes == {**batch[1].attributes, HEAL_ATTEMPTS: "2"}
    assert not dead.sent and counted("requeued") == before + 1
    assert "rsc:_heal-probe{Accounts:stuck}" in cache.entries


def test_at_the_bound_the_letter_is_dead_lettered_with_its_story() -> None:
    """The attempt that reaches ``max_attempts`` dead-letters the letter as ``heal-exhausted``
    with the last error, the heal subscription as its source, its count, and the deliveries
    Pub/Sub made before forwarding it added to its attempts; its delivery is acked."""
    cache = Refusing(":account:{Accounts:stuck}")
    heal, topic, dead = healer(cache, max_attempts=3)
    before = counted("exhausted")
    [outcome] = heal.process([letter("stuck", 1, attempts=2)])
    assert outcome.disposition is Disposition.ACK
    assert outcome.dead_letter_reason == "heal-exhausted"
    [(message, error)] = dead.sent
    assert error.reason == "heal-exhausted"
    assert str(error) == "gave up after 3 heal attempts: redis refused a write: NOPERM"
    assert message.attributes[HEAL_ATTEMPTS] == "3"
    assert dead.stories == [(SOURCE, 8)]
    assert not topic.published and counted("exhausted") == before + 1


def test_a_letter_whose_slot_takes_no_write_is_not_counted() -> None:
    """A letter that fails alone while the probe in its own slot fails too (its primary is
    down, say) is released uncounted."""
    cache = Refusing(":account:{Accounts:stuck}")
    heal, topic, dead = healer(cache)
    [counted_once] = heal.process([letter("stuck", 1)])
    assert counted_once.disposition is Disposition.ACK  # the probe beside it applied
    cache.refused.add("_heal-probe{Accounts:stuck}")
    [again] = heal.process([letter("stuck", 2, attempts=1)])
    assert again.disposition is Disposition.NACK
    assert len(topic.published) == 1 and not dead.sent


def test_a_dead_letter_topic_that_fails_leaves_the_letter_released() -> None:
    """If the dead-letter publish fails at the bound, the letter is nacked: never dropped."""
    cache = Refusing(":account:{Accounts:stuck}")
    heal, topic, dead = healer(cache, max_attempts=1)
    dead.fail = True
    [outcome] = heal.process([letter("stuck", 1)])
    assert outcome.disposition is Disposition.NACK and not topic.published


def test_without_a_bound_letters_pass_through() -> None:
    """``max_attempts`` 0: the heal loop releases failing letters uncounted, as it always did."""
    cache = Refusing(":account:{Accounts:stuck}")
    heal, topic, dead = healer(cache, max_attempts=0)
    [outcome] = heal.process([letter("stuck", 1, attempts=50)])
    assert outcome.disposition is Disposition.NACK
    assert not topic.published and not dead.sent
