"""``parse_json`` (envelopes, outbox key and payload columns) reads every text exactly as
``json.loads`` does: the same value where it takes the text, an error where it refuses it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.schemas.envelope import decode, parse_json

# JSON values as Python writers produce them: floats include NaN and the infinities (which
# json.dumps writes as bare words), strings include lone surrogates.
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(),
                    st.sampled_from(["\ud800", "a\udfffb"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


def _outcome(parse: Any, text: bytes) -> str:
    """The value read, shown, or "refused"."""
    try:
        return repr(parse(text))
    except (ValueError, RecursionError):
        return "refused"


@given(values)
def test_what_python_writes_reads_back_as_json_loads_reads_it(value: object) -> None:
    text = json.dumps(value)
    assert repr(parse_json(text)) == repr(json.loads(text))
    assert repr(parse_json(text.encode())) == repr(json.loads(text))


@given(st.lists(st.one_of(st.text(max_size=5),
                          st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010)),
                max_size=4))
def test_text_holding_lone_surrogates_reads_as_json_loads_reads_it(parts: list[str]) -> None:
    """A str (as Spanner's client hands over a STRING column) may hold what UTF-8 can't."""
    text = json.dumps(parts, ensure_ascii=False)
    assert repr(parse_json(text)) == repr(json.loads(text))


@given(st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode),
                 values.map(lambda v: json.dumps(v)[:-1].encode())))
def test_any_bytes_are_taken_or_refused_as_json_loads_does(raw: bytes) -> None:
    def stdlib(text: bytes) -> Any:
        return json.loads(text.decode("utf-8"))

    assert _outcome(parse_json, raw) == _outcome(stdlib, raw)


@pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity", '"\\ud800"', "1e400"])
def test_an_envelope_whose_payload_holds_what_only_json_takes_still_decodes(word: str) -> None:
    raw = ('{"commit_ts":"2026-01-01T00:00:00.000000001Z","event_id":"abcdefgh-1",'
           '"key":["a"],"payload":{"x":' + word + '},"schema_version":1,'
           '"table":"Accounts","type":"row.changed"}').encode()
    assert repr(decode(raw).payload) == repr({"x": json.loads(word)})
