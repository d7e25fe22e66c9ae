"""Every letter the hold subscription can contain is shown and found: any data (binary, not
JSON, nested past the parser's depth, a dead letter inside a dead letter) and any attributes
(a story, Pub/Sub's forwarding ones, none at all); and tables read well at any width or piped."""

from __future__ import annotations

import io
import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from redis_spanner.consumers.dead_letters import DeadLetter, Filter
from redis_spanner.consumers.messages import Inbound
from redis_spanner.infra.cli.dlq import COLUMNS, _details, _full, _row
from redis_spanner.infra.cli.tables import print_table
from rich.console import Console

EVENT_ID = "7a1b2c3d-0000-4000-8000-00000000beef"
ATTRIBUTE_NAMES = st.sampled_from([
    "event_id", "event_type", "table", "replay_count", "replayed_from", "dl_reason", "dl_error",
    "dl_delivery_attempts", "dl_first_failure_time", "CloudPubSubDeadLetterSourceDeliveryCount",
    "CloudPubSubDeadLetterSourceTopicPublishTime", "CloudPubSubDeadLetterSourceSubscription",
])
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=10,
)
DATA = st.one_of(
    st.binary(max_size=200),
    JSONISH.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 50_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.text(max_size=50).map(lambda t: json.dumps({"event_id": t, "key": [t]}).encode()),
)


def inbound(data: bytes, attributes: dict[str, str], message_id: str = "101") -> Inbound:
    return Inbound(message_id, data, attributes, publish_time=time.time() - 5)


def single_line(cell: str) -> bool:
    return cell.isprintable() and "\n" not in cell and len(cell) <= 200


@settings(max_examples=150, deadline=None)
@given(data=DATA, attributes=st.dictionaries(ATTRIBUTE_NAMES, st.text(max_size=40), max_size=6))
def test_any_letter_is_listed_shown_and_filtered_without_error(
    data: bytes, attributes: dict[str, str]
) -> None:
    """Whatever a letter holds, its row is one printable line per cell, its details and JSON
    render, and a filter by id, reason or type answers."""
    letter = DeadLetter.of(inbound(data, attributes))
    now = time.time()
    row = _row(letter, now)
    assert len(row) == len(COLUMNS) and all(single_line(cell) for cell in row)
    assert _details(letter, now, "1 of 1")
    json.dumps(_full(letter, now))
    for where in (Filter(ids=frozenset({"101"})), Filter(reasons=frozenset({letter.reason})),
                  Filter(types=frozenset({"row.changed"}))):
        where(letter)
    assert Filter(ids=frozenset({"101"}))(letter)


def test_a_letter_without_attributes_is_found_by_the_event_id_in_its_body() -> None:
    """A body that names its event but is no valid envelope (and no attribute says which event
    it is) is still listed with its event id, type, table and key, and found by that id."""
    body = json.dumps({"event_id": EVENT_ID, "type": "row.changed", "table": "Accounts",
                       "key": ["a-1"], "commit_ts": "not a time"}).encode()
    letter = DeadLetter.of(inbound(body, {}))
    assert letter.event is None and letter.problem is not None
    assert (letter.event_id, letter.event_type, letter.table, letter.key) == (
        EVENT_ID, "row.changed", "Accounts", ["a-1"])
    assert Filter(ids=frozenset({EVENT_ID}))(letter)
    assert not Filter(ids=frozenset({"another-event"}))(letter)


def test_a_dead_letter_of_a_dead_letter_shows_the_inner_event() -> None:
    """A letter forwarded again by Pub/Sub, whose body is an earlier letter as the tools print
    it, is listed with the inner event's id and found by it."""
    inner = DeadLetter.of(inbound(b"{broken", {"event_id": EVENT_ID, "dl_reason": "undecodable"}))
    outer = DeadLetter.of(inbound(json.dumps(_full(inner, time.time())).encode(), {
        "CloudPubSubDeadLetterSourceDeliveryCount": "5"}, message_id="202"))
    assert outer.forwarded and outer.attempts == 5
    assert outer.event_id == EVENT_ID and Filter(ids=frozenset({EVENT_ID}))(outer)


def test_data_nested_past_the_parsers_depth_is_shown_as_text() -> None:
    """JSON nested deeper than the parser recurses is undecodable, listed and shown, not a
    crash."""
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    letter = DeadLetter.of(inbound(deep, {"event_id": EVENT_ID}))
    assert letter.event is None and letter.key is None and letter.event_id == EVENT_ID
    assert "data (text" in _details(letter, time.time(), "1 of 1")


ROWS = [["1", "short", "an error message that is rather long " * 3],
        ["22", "a much longer value", "x"]]


def rendered(terminal: bool, width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=width, color_system=None)
    print_table(console, ("id", "name", "error"), ROWS, shrink="error", shrink_to=48)
    return out.getvalue()


def test_piped_tables_are_plain_aligned_columns_never_wrapped_or_cut() -> None:
    """Off a terminal, whatever the width: a header and one line per row, columns starting at
    the same offset, every cell whole, no box drawing."""
    for width in (20, 80, 300):
        lines = rendered(False, width).splitlines()
        assert len(lines) == 1 + len(ROWS)
        assert not any(ch in "".join(lines) for ch in "│┃─━┏┌")
        starts = {line.index(cell) for line, cell in zip(lines[1:], ("short", "a much"),
                                                          strict=True)}
        assert starts == {lines[0].index("name")}
        assert ROWS[0][2].strip() in lines[1]


def test_terminal_tables_fit_the_width_or_become_one_block_per_row() -> None:
    """On a terminal no line is wider than the screen: a table while it fits (the error
    column giving way first), else `column  value` blocks that keep every value whole."""
    for width in (30, 60, 120, 200):
        text = rendered(True, width)
        assert all(len(line) <= width for line in text.splitlines())
        if width < 60:
            assert ROWS[1][1] in text and "name   a much longer value" in text
        else:
            assert "┃" in text or "│" in text
