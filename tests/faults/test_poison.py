"""Poison messages of every kind, mixed with committed events, on the real pipeline."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from redis_spanner.consumers.messages import Disposition, Inbound
from redis_spanner.consumers.worker import Consumer
from redis_spanner.infra.local import faults
from redis_spanner.schemas.events import EventType

from tests.waiting import wait_until

if TYPE_CHECKING:
    from tests.faults.harness import Pipeline

pytestmark = pytest.mark.integration

ENVELOPE_FIELDS = ("schema_version", "event_id", "type", "table", "key", "commit_ts")
TABLES = {"Accounts", "Teams", "Members"}
# A value the contract accepts, followed by one newline: Python's ``$`` matches before it.
_TRAILING_NEWLINE = r"{}\n"
_KEY_PART = r"[A-Za-z0-9._@-]+"
_EVENT_ID = r"[A-Za-z0-9-]{8,64}"
_IDENTIFIER = r"[A-Za-z][A-Za-z0-9_]{0,127}"


def _refused_by(pattern: str) -> Any:
    """Strings the pattern does not match, leaving out the trailing-newline form (see the
    expected failure below)."""
    whole = re.compile(pattern)
    newline = re.compile(_TRAILING_NEWLINE.format(pattern))
    return lambda s: not whole.fullmatch(s) and not newline.fullmatch(s)


def _envelope(**changes: Any) -> bytes:
    body = {**faults.VALID_ENVELOPE, "event_id": str(uuid.uuid4()), **changes}
    return json.dumps({k: v for k, v in body.items() if v is not _DROP}).encode()


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
        return False


_DROP = object()
_texts = st.text(max_size=40)
_scalars = (st.none() | st.booleans() | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False) | _texts)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=5,
)
_good_parts = st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True)
_bad_typed_parts = (st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.none()
                    | st.lists(_scalars, max_size=2) | st.just("") | st.text(min_size=129,
                                                                             max_size=140))


def _case(reason: str, **changes: Any) -> tuple[bytes, str]:
    return _envelope(**changes), reason


def poison() -> st.SearchStrategy[tuple[bytes, str]]:
    """One defect on an otherwise valid envelope, with the dead-letter reason it must get."""
    event_types = {str(t) for t in EventType}
    return st.one_of(
        st.binary(min_size=1, max_size=64).filter(lambda b: not _is_json_object(b))
        .map(lambda b: (b, "undecodable")),
        _json.filter(lambda v: not isinstance(v, dict))
        .map(lambda v: (json.dumps(v).encode(), "undecodable")),
        _json.filter(lambda v: type(v) is not int)
        .map(lambda v: _case("invalid", schema_version=v)),
        st.integers().filter(lambda v: v != 1)
        .map(lambda v: _case("unsupported-schema-version", schema_version=v)),
        st.sampled_from(ENVELOPE_FIELDS).map(lambda f: _case("invalid", **{f: _DROP})),
        st.tuples(st.text(min_size=1, max_size=20).filter(
            lambda k: k not in {*ENVELOPE_FIELDS, "payload"}), _json)
        .map(lambda kv: _case("invalid", **{kv[0]: kv[1]})),
        (_texts | _json).filter(lambda v: not (isinstance(v, str) and v in event_types))
        .map(lambda v: _case("unknown-type", type=v)),
        (_json.filter(lambda v: not isinstance(v, str))
         | _texts.filter(lambda s: not re.search(r"\d{4}-\d{2}-\d{2}T", s))
         | st.integers(1, 1970).map(lambda y: f"{y:04d}-01-01T00:00:00Z")
         | st.just("2030-02-30T00:00:00Z"))
        .map(lambda v: _case("invalid", commit_ts=v)),
        (_json.filter(lambda v: not isinstance(v, list)) | st.just([])
         | st.lists(_good_parts, min_size=9, max_size=12) | _bad_typed_parts.map(lambda p: [p]))
        .map(lambda v: _case("invalid", key=v)),
        st.text(min_size=1, max_size=128).filter(_refused_by(_KEY_PART))
        .map(lambda p: _case("key-refused", key=[p])),
        (st.integers().map(lambda n: [n]) | st.lists(_good_parts, min_size=2, max_size=8))
        .map(lambda v: _case("key-refused", key=v)),
        st.sampled_from(["Teams", "Members"]).map(lambda t: _case("key-refused", table=t)),
        st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True)
        .filter(lambda t: t not in TABLES).map(lambda t: _case("key-refused", table=t)),
        (_texts.filter(_refused_by(_IDENTIFIER)) | _json.filter(lambda v: not isinstance(v, str)))
        .map(lambda v: _case("invalid", table=v)),
        (_texts.filter(_refused_by(_EVENT_ID)) | _json.filter(lambda v: not isinstance(v, str)))
        .map(lambda v: _case("invalid", event_id=v)),
        _json.filter(lambda v: v is not None and not isinstance(v, dict))
        .map(lambda v: _case("invalid", payload=v)),
    )


@contextmanager
def publisher() -> Iterator[pubsub_v1.PublisherClient]:
    client = pubsub_v1.PublisherClient()
    try:
        yield client
    finally:
        client.stop()


# The pipeline's threads draw retry jitter from the global random generator while examples
# are generated; the examples themselves do not depend on it.
@pytest.mark.filterwarnings("ignore:Do not use the .random. module inside strategies")
@pytest.mark.timeout(180)
def test_poison_of_every_kind_is_dead_lettered_with_its_reason(open_pipeline: Any) -> None:
    """Malformed payloads, contract violations and refused keys, published among committed
    events: each poison message is dead-lettered once with its reason, every committed event
    is applied (one whose key held a foreign entry too), the hold subscription holds nothing
    else, and no pull loop dies."""
    pipe: Pipeline = open_pipeline(retry_attempts=100, retry_seconds=0.5)
    ids = pipe.accounts(10)
    pipe.fill(ids)
    pipe.start_relay()
    pipe.start_worker()
    expected: dict[str, str] = {}

    with publisher() as client:
        def publish(data: bytes, reason: str) -> str:
            message_id = faults.publish_raw(client, pipe.settings.topic_path, data)
            expected[message_id] = reason
            return message_id

        def dead_lettered(data: bytes, reason: str) -> None:
            message_id = publish(data, reason)
            outcome = wait_until(lambda: pipe.outcome_of(message_id))
            assert (outcome.dead_letter_reason, outcome.disposition) == (reason, "ack"), data

        # A key Redis holds as a plain string: the guard overwrites it, the event applies.
        foreign = pipe.keys(["wrong-type"])[0].key
        pipe.cache.client.set(foreign, "not a cache entry")
        applied = faults.publish_raw(client, pipe.settings.topic_path,
                                     _envelope(key=["wrong-type"]))
        outcome = wait_until(lambda: pipe.outcome_of(applied), timeout=20)
        assert (outcome.dead_letter_reason, outcome.disposition) == (None, "ack")
        [overwritten] = pipe.cache.get([foreign])
        assert overwritten is not None and overwritten.tombstone

        with pipe.writing(ids, rate=20):
            for each in faults.POISON:
                dead_lettered(each.data, each.reason)

            @examples(max_examples=50, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
            @given(poison())
            def every_poison_is_dead_lettered(case: tuple[bytes, str]) -> None:
                dead_lettered(*case)

            every_poison_is_dead_lettered()

    pipe.check(ids, poison=expected)
    assert len(pipe.tally.committed) > 20


def _decided(pipe: Pipeline, *messages: Inbound) -> list[Any]:
    consumer = Consumer.from_settings(pipe.settings)
    try:
        return consumer.processor.process(list(messages))
    finally:
        consumer.close()


def _good(pipe: Pipeline) -> Inbound:
    account = pipe.accounts(1)[0]
    return Inbound("good-1", _envelope(key=[account]), delivery_attempt=1)


@pytest.mark.timeout(60)
def test_deeply_nested_json_is_dead_lettered_not_fatal(open_pipeline: Any) -> None:
    """A payload nested deeper than the JSON decoder recurses is undecodable like any other."""
    pipe: Pipeline = open_pipeline()
    nested = Inbound("nested-1", b"[" * 100_000 + b"]" * 100_000, delivery_attempt=1)
    outcomes = _decided(pipe, nested, _good(pipe))
    assert [o.dead_letter_reason for o in outcomes] == ["undecodable", None]


@pytest.mark.timeout(60)
def test_int64_key_part_out_of_range_is_refused_alone(open_pipeline: Any) -> None:
    """A team id outside INT64 is refused as a key; the good event in its batch is applied."""
    pipe: Pipeline = open_pipeline()
    huge = Inbound("huge-1", _envelope(table="Teams", key=[2**63]), delivery_attempt=1)
    outcomes = _decided(pipe, huge, _good(pipe))
    assert outcomes[0].dead_letter_reason == "key-refused"
    assert outcomes[1].dead_letter_reason is None
    assert outcomes[1].disposition is Disposition.ACK and outcomes[1].changed


@pytest.mark.timeout(60)
def test_trailing_newline_in_an_id_or_key_part_is_refused(open_pipeline: Any) -> None:
    """An event id or key part followed by a newline breaks the contract like any other
    character outside it."""
    pipe: Pipeline = open_pipeline()
    outcomes = _decided(
        pipe,
        Inbound("newline-1", _envelope(event_id="0badc0de-0001\n"), delivery_attempt=1),
        Inbound("newline-2", _envelope(key=["poison\n"]), delivery_attempt=1),
    )
    assert [o.dead_letter_reason for o in outcomes] == ["invalid", "key-refused"]
