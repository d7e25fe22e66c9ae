"""The published contract (schemas/envelope.schema.json, schemas/guard.lua) is what the code
generates, and the JSON Schema agrees with the code: it accepts what the producer encodes and
refuses what the consumer refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.schemas import cache, contract, envelope, versions
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import PermanentError
from redis_spanner.schemas.events import INT64_MAX, INT64_MIN, EventType
from redis_spanner.schemas.keys import validate_part

SCHEMA = json.loads(contract.SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
ATTRIBUTES = jsonschema.Draft202012Validator({**SCHEMA, **SCHEMA["$defs"]["attributes"]})
ENTRY = jsonschema.Draft202012Validator(SCHEMA["$defs"]["cacheEntry"])


def test_the_shipped_files_are_what_the_code_generates() -> None:
    """Regenerating the contract changes nothing: the schema and the Lua guard in the repo are
    the code's, byte for byte (run `python -m redis_spanner.schemas.contract` after a change)."""
    for path, text in contract.rendered().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is out of date"
    assert contract.main(["--check"]) == 0
    assert contract.guard_script().endswith(cache.GUARD.lstrip("\n"))


def test_check_fails_on_a_stale_file_and_writing_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--check` exits 1 naming a file that differs, without writing; a plain run rewrites it."""
    stale = tmp_path / "envelope.schema.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(contract, "SCHEMA_PATH", stale)
    monkeypatch.setattr(contract, "GUARD_PATH", tmp_path / "guard.lua")
    assert contract.main(["--check"]) == 1
    assert stale.read_text() == "{}\n"
    assert contract.main([]) == 0
    assert contract.main(["--check"]) == 0
    assert json.loads(stale.read_text()) == SCHEMA


_parts = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.text(st.sampled_from("abcXYZ019._@-"), min_size=1, max_size=128),
)
_events = st.builds(
    Event,
    event_id=st.text(st.sampled_from("abcdef0123456789-"), min_size=8, max_size=64),
    type=st.sampled_from(list(EventType)),
    table=st.from_regex(r"\A[A-Za-z][A-Za-z0-9_]{0,20}\Z"),
    key=st.lists(_parts, min_size=1, max_size=8).map(tuple),
    version=st.integers(1, 4 * 10**18),
    payload=st.none() | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@given(_events)
def test_every_encoded_event_and_its_attributes_validate(event: Event) -> None:
    """What the producer puts on the wire, body and attributes, satisfies the schema."""
    VALIDATOR.validate(json.loads(event.encode()))
    ATTRIBUTES.validate(event.attributes())


GOOD: dict[str, Any] = {"schema_version": 1, "event_id": "0123456789ab", "type": "row.changed",
                        "table": "Accounts", "key": ["acct-1", 7],
                        "commit_ts": "2026-03-04T05:06:07.123456789Z"}
REFUSED = {
    "missing field": {k: v for k, v in GOOD.items() if k != "commit_ts"},
    "unknown field": {**GOOD, "extra": 1},
    "schema version": {**GOOD, "schema_version": 2},
    "event type": {**GOOD, "type": "row.moved"},
    "event id": {**GOOD, "event_id": "short"},
    "table": {**GOOD, "table": "1Accounts"},
    "empty key": {**GOOD, "key": []},
    "long key": {**GOOD, "key": list(range(9))},
    "key part glob": {**GOOD, "key": ["acct*"]},
    "key part float": {**GOOD, "key": [1.5]},
    "key part beyond int64": {**GOOD, "key": [INT64_MAX + 1]},
    "commit_ts offset": {**GOOD, "commit_ts": "2026-03-04T05:06:07+01:00"},
    "commit_ts number": {**GOOD, "commit_ts": 1},
    "payload list": {**GOOD, "payload": [1]},
}


def test_the_good_example_is_accepted_by_both() -> None:
    """The control: the sample envelope decodes and validates."""
    VALIDATOR.validate(GOOD)
    envelope.decode(json.dumps(GOOD).encode())


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_the_schema_refuses_the_consumer_refuses(case: str) -> None:
    """Each class of broken envelope fails the schema, and the consumer's decode (or its key
    check) refuses it too, so a reader of the schema predicts the dead letter."""
    body = REFUSED[case]
    assert not VALIDATOR.is_valid(body)
    with pytest.raises(PermanentError):
        event = envelope.decode(json.dumps(body).encode())
        for part in event.key:
            validate_part(part)


_entries = st.dictionaries(
    st.sampled_from(["v", "s", "d", "x"]),
    st.one_of(st.sampled_from(["v", "t", "", "{}", "null", "12"]),
              st.integers(0, 10**19).map(versions.encode),
              st.text(max_size=21)),
    min_size=1,
)


@given(_entries)
def test_a_cache_entry_validates_exactly_when_the_guard_would_honour_it(
    fields: dict[str, str]
) -> None:
    """The schema's cache entry is exactly what the guard writes: a hash it validates is one
    the guard honours (never foreign; the clock-dependent future-version rule aside), and the
    guard's two shapes, a tombstone {v, s=t} and a value {v, s=v, d}, are all it validates."""
    foreign = cache.foreign_kind(fields, ceiling=10**20)
    assert ENTRY.is_valid(fields) == (foreign is None and set(fields) <= {"v", "s", "d"}
                                      and not (fields.get("s") == "t" and "d" in fields))
