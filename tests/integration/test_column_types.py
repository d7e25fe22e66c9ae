"""Every Spanner column type round-trips through the cache, on the real emulator and Redis.

A table with one column of each type (and an ARRAY of each) is rewarmed by the consumer core
with its real adapters. The cached JSON is compared with text written out by hand from the
README's encoding table, and with generated values through verify's own check."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.spanner_v1 import JsonObject
from google.cloud.spanner_v1.data_types import Interval
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Disposition, Inbound
from redis_spanner.consumers.pubsub import DeadLetterPublisher
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows
from redis_spanner.consumers.value_check import same
from redis_spanner.consumers.verify import verify
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.cache import CacheOp
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Action, CacheKey, Catalog, KeyTemplate, Trigger
from redis_spanner.schemas.settings import Settings

SCALAR_TYPES = {"S": "STRING(MAX)", "I": "INT64", "F": "FLOAT64", "G": "FLOAT32",
                "N": "NUMERIC", "B": "BOOL", "Y": "BYTES(MAX)", "D": "DATE", "T": "TIMESTAMP",
                "J": "JSON"}
COLUMNS = (*SCALAR_TYPES, *(f"A{c}" for c in SCALAR_TYPES))
DDL = "CREATE TABLE AllTypes (Id STRING(64) NOT NULL, {}) PRIMARY KEY (Id)".format(", ".join(
    [f"`{c}` {t}" for c, t in SCALAR_TYPES.items()]
    + [f"`A{c}` ARRAY<{t}>" for c, t in SCALAR_TYPES.items()]))
TYPED = KeyTemplate(name="typed", entity="AllTypes", key_columns=("Id",),
                    triggers=(Trigger("AllTypes", arity=1, parts=(0,)),),
                    action=Action.REWARM, columns=COLUMNS)


@pytest.fixture
def typed_table(database: Any) -> Any:
    database.update_ddl([DDL]).result(120)
    return database


@pytest.fixture
def catalog(settings: Settings) -> Catalog:
    return Catalog(settings.namespace, (TYPED,))


@pytest.fixture
def processor(provisioned: Settings, typed_table: Any, catalog: Catalog, cache: RedisCache
              ) -> Iterator[Processor]:
    dead_letters = DeadLetterPublisher(provisioned.dead_letter_topic_path,
                                       provisioned.subscription_path)
    yield Processor(catalog, cache, SpannerRows(typed_table), dead_letters)
    dead_letters.close()


def _write(database: Any, row_id: str, values: dict[str, Any]) -> None:
    columns = ["Id", *values]
    cells = [_bytes_in(c, v) for c, v in values.items()]

    def work(tx: Any) -> None:
        tx.insert_or_update("AllTypes", columns, [[row_id, *cells]])

    run_transaction(database, work)


def _bytes_in(column: str, value: Any) -> Any:
    """The client takes BYTES as base64 text."""
    if column.endswith("Y") and isinstance(value, bytes):
        return base64.b64encode(value)
    if column.endswith("Y") and isinstance(value, list):
        return [None if v is None else base64.b64encode(v) for v in value]
    return value


def _message(row_id: str) -> Inbound:
    event = Event(str(uuid.uuid4()), EventType.ROW_CHANGED, "AllTypes", (row_id,),
                  time.time_ns() - 1_000_000_000)
    return Inbound(event.event_id, event.encode(), event.attributes())


def _cached(cache: RedisCache, catalog: Catalog, row_id: str) -> str:
    [entry] = cache.get([catalog.key(TYPED, [row_id]).key])
    assert entry is not None and not entry.tombstone and entry.data is not None
    return entry.data


NANOS = DatetimeWithNanoseconds(2026, 3, 4, 5, 6, 7, nanosecond=123456789, tzinfo=dt.UTC)
ROWS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # row id: (values written to Spanner, the JSON the README promises for them)
    "edges": ({
        "S": "héllo\n\"q\"", "I": -(2**63), "F": math.nan, "G": 1.5,
        "N": decimal.Decimal("99999999999999999999999999999.999999999"), "B": False,
        "Y": b"\x00\xff\xfe", "D": dt.date(1, 1, 1), "T": NANOS,
        "J": JsonObject([1, "two", {"three": None}]),
        "AS": ["a", None, ""], "AI": [2**63 - 1, None], "AF": [math.inf, -math.inf, -0.0, None],
        "AG": [0.25], "AN": [decimal.Decimal("1E-9"), None], "AB": [True, None],
        "AY": [b"a", None], "AD": [dt.date(9999, 12, 31)], "AT": [NANOS, None],
        "AJ": [JsonObject({"a": 1}), JsonObject("scalar"), JsonObject(7), None],
    }, {
        "S": "héllo\n\"q\"", "I": -(2**63), "F": "NaN", "G": 1.5,
        "N": "99999999999999999999999999999.999999999", "B": False, "Y": "AP/+",
        "D": "0001-01-01", "T": "2026-03-04T05:06:07.123456789Z",
        "J": [1, "two", {"three": None}],
        "AS": ["a", None, ""], "AI": [2**63 - 1, None], "AF": ["Infinity", "-Infinity", -0.0, None],
        "AG": [0.25], "AN": ["0.000000001", None], "AB": [True, None], "AY": ["YQ==", None],
        "AD": ["9999-12-31"], "AT": ["2026-03-04T05:06:07.123456789Z", None],
        "AJ": [{"a": 1}, "scalar", 7, None],
    }),
    "nulls": ({}, dict.fromkeys(COLUMNS)),
    "json scalar": ({"J": JsonObject(True), "AJ": []}, {
        **dict.fromkeys(COLUMNS), "J": True, "AJ": []}),
}


def test_every_column_type_is_cached_in_its_documented_form(
    provisioned: Settings, typed_table: Any, processor: Processor, cache: RedisCache,
    catalog: Catalog,
) -> None:
    """Rows holding edge values of every type (NaN, infinities, -0, the INT64 and NUMERIC
    limits, year 1 and 9999, nanoseconds, JSON arrays and scalars, NULLs, NULL elements) are
    cached exactly as documented, verify finds them fresh, and a value cached in a wrong form
    (a JSON array as ``{}``, as before) is found stale and repaired."""
    for row_id, (values, _) in ROWS.items():
        _write(typed_table, row_id.replace(" ", "-"), values)
    outcomes = processor.process([_message(r.replace(" ", "-")) for r in ROWS])
    assert all(o.disposition is Disposition.ACK and o.changed for o in outcomes), outcomes
    for row_id, (_, expected) in ROWS.items():
        cached = _cached(cache, catalog, row_id.replace(" ", "-"))
        assert json.loads(cached) == expected, row_id
        assert "NaN" not in cached.replace('"NaN"', "")  # standard JSON only
    rows = SpannerRows(typed_table)
    report = verify(cache, catalog, rows)
    assert (report.checked, report.stale, report.foreign) == (3, [], {})

    key = catalog.key(TYPED, ["edges"]).key
    wrong = {**ROWS["edges"][1], "J": {}}
    cache.client.hset(key, mapping={"d": json.dumps(wrong), "v": "0" * 19 + "1", "s": "v"})
    report = verify(cache, catalog, rows, repair=True)
    assert (report.stale, report.repaired, report.remaining_stale) == ([key], 1, [])
    assert json.loads(_cached(cache, catalog, "edges")) == ROWS["edges"][1]


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6)
_stamps = st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31),
                       timezones=st.just(dt.UTC)).flatmap(
    lambda d: st.integers(0, 999).map(lambda n: DatetimeWithNanoseconds(
        d.year, d.month, d.day, d.hour, d.minute, d.second,
        nanosecond=d.microsecond * 1000 + n, tzinfo=dt.UTC)))
GENERATED = {
    "S": _text, "I": st.integers(-(2**63), 2**63 - 1), "F": st.floats(),
    "G": st.floats(width=32),
    "N": st.decimals(decimal.Decimal("-99999999999999999999999999999.999999999"),
                     decimal.Decimal("99999999999999999999999999999.999999999"), places=9),
    "B": st.booleans(), "Y": st.binary(max_size=16), "D": st.dates(), "T": _stamps,
    "J": _json,
}


def _column(name: str) -> st.SearchStrategy[Any]:
    scalar = name.removeprefix("A") if len(name) == 2 else name
    values = GENERATED[scalar]
    if len(name) == 2:
        return st.none() | st.lists(st.none() | values, max_size=4)
    return st.none() | values


def _spanner(name: str, value: Any) -> Any:
    """What the client writes for a generated value: JSON goes in as a JsonObject."""
    if value is None or not name.endswith("J"):
        return value
    if isinstance(value, list) and len(name) == 2:
        return [None if v is None else JsonObject(v) for v in value]
    return JsonObject(value)


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(row=st.fixed_dictionaries({c: _column(c) for c in COLUMNS}))
def test_generated_values_of_every_type_round_trip(
    typed_table: Any, processor: Processor, cache: RedisCache, catalog: Catalog,
    row: dict[str, Any],
) -> None:
    """For generated values of every type and ARRAY type, written to the emulator and rewarmed
    by the consumer, the cached JSON is the written value (checked by verify's comparison,
    against what was written rather than what was read back)."""
    _write(typed_table, "gen", {c: _spanner(c, v) for c, v in row.items()})
    [outcome] = processor.process([_message("gen")])
    assert outcome.disposition is Disposition.ACK and outcome.dead_letter_reason is None
    cached = json.loads(_cached(cache, catalog, "gen"))
    for column, value in row.items():
        assert same(cached[column], value), (column, value, cached[column])


class _WithInterval:
    """The real Spanner reader, with an INTERVAL value (which the client returns as
    ``Interval``) in one row: the emulator has no INTERVAL type to hold one."""

    def __init__(self, rows: SpannerRows, key: str) -> None:
        self._rows = rows
        self._key = key

    def read(self, keys: Sequence[CacheKey]) -> tuple[dict[str, Any], int]:
        values, version = self._rows.read(keys)
        values[self._key] = {**values[self._key], "S": Interval(days=1)}
        return values, version


def test_a_value_with_no_cached_form_dead_letters_its_event_not_the_batch(
    provisioned: Settings, typed_table: Any, catalog: Catalog, cache: RedisCache,
) -> None:
    """An event whose rewarm meets a value with no cached form is dead-lettered with
    ``uncacheable-value`` and its key tombstoned; the other events of the batch apply."""
    for row_id in ("odd", "fine"):
        _write(typed_table, row_id, {"S": row_id})
    odd = catalog.key(TYPED, ["odd"]).key
    dead_letters = DeadLetterPublisher(provisioned.dead_letter_topic_path,
                                       provisioned.subscription_path)
    try:
        processor = Processor(catalog, cache, _WithInterval(SpannerRows(typed_table), odd),
                              dead_letters)
        outcomes = processor.process([_message("odd"), _message("fine")])
    finally:
        dead_letters.close()
    assert [(o.disposition, o.dead_letter_reason) for o in outcomes] == [
        (Disposition.ACK, "uncacheable-value"), (Disposition.ACK, None)]
    assert cache.get([odd])[0].tombstone  # type: ignore[union-attr]
    assert json.loads(_cached(cache, catalog, "fine"))["S"] == "fine"
    cache.apply([CacheOp.invalidate(odd, time.time_ns())])
