"""Trace context from the writer's span to the consumer: the outbox row's TraceParent, the
message attribute, the consumer's span and its log line."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis_spanner.consumers import core, telemetry
from redis_spanner.consumers.messages import Inbound
from redis_spanner.producers.outbox import OUTBOX_COLUMNS, outbox_values
from redis_spanner.producers.outbox_rows import OutboxRow, classify
from redis_spanner.schemas import tracing
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.events import EventType

from tests.fakes import MemoryCache, MemoryDeadLetters, MemoryRows
from tests.unit.test_core import CATALOG

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_outbox_row_records_the_writers_span_and_null_without_one() -> None:
    """Inside a span the row's TraceParent names that span's trace and span; with no span
    (no SDK configured) it is NULL."""
    tracer = TracerProvider().get_tracer("writer")
    with tracer.start_as_current_span("transfer") as span:
        row = dict(zip(OUTBOX_COLUMNS, outbox_values(EventType.ROW_CHANGED, "Accounts", ("a",)),
                       strict=True))
    context = span.get_span_context()
    ref = tracing.parse(row["TraceParent"])
    assert ref == tracing.TraceRef(format(context.trace_id, "032x"),
                                   format(context.span_id, "016x"))
    bare = dict(zip(OUTBOX_COLUMNS, outbox_values(EventType.ROW_CHANGED, "Accounts", ("a",)),
                    strict=True))
    assert bare["TraceParent"] is None


def relay_row(traceparent: object) -> OutboxRow:
    result = classify([3, str(uuid.uuid4()), "row.changed", "Accounts", '["a"]', None, 1,
                       dt.datetime(2026, 1, 2, tzinfo=dt.UTC), traceparent])
    assert isinstance(result, OutboxRow)
    return result


@given(st.one_of(st.none(), st.text(max_size=80),
                 st.sampled_from([PARENT, PARENT.upper(), PARENT[:-1], "00-" + "0" * 32 + "-"
                                  + "1" * 16 + "-01"])))
def test_the_relay_forwards_a_valid_traceparent_and_drops_any_other(value: object) -> None:
    """A well-formed traceparent becomes the message's ``traceparent`` attribute; anything
    else a writer put in the column is left out, and never makes the row poison."""
    row = relay_row(value)
    if tracing.parse(value if isinstance(value, str) else None):
        assert row.attributes[tracing.ATTRIBUTE] == value
    else:
        assert tracing.ATTRIBUTE not in row.attributes


def inbound(n: int, traceparent: str | None) -> Inbound:
    event = Event(f"0f8e2c1a-{n:04d}", EventType.ROW_CHANGED, "Accounts", (f"a{n}",), 100 + n)
    attributes = event.attributes()
    if traceparent:
        attributes[tracing.ATTRIBUTE] = traceparent
    return Inbound(f"m{n}", event.encode(), attributes)


def test_the_consumer_continues_the_trace_in_its_span_and_its_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch with one trace is processed in a child span of the writer's span, and the
    batch's -v line names that trace and the event; a batch of several traces links to each."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("consumer"))
    processor = core.Processor(CATALOG, MemoryCache(), MemoryRows(), MemoryDeadLetters())
    caplog.set_level(logging.DEBUG, logger="redis_spanner.consumers.core")

    processor.process([inbound(1, PARENT), inbound(2, None)])
    (span,) = exporter.get_finished_spans()
    assert span.parent is not None
    assert format(span.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    (line,) = [r for r in caplog.records if r.getMessage().startswith("batch of 2")]
    assert line.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"  # type: ignore[attr-defined]
    assert line.event_ids == ["0f8e2c1a-0001", "0f8e2c1a-0002"]  # type: ignore[attr-defined]

    other = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    processor.process([inbound(3, PARENT), inbound(4, other)])
    linked = exporter.get_finished_spans()[-1]
    assert linked.parent is None
    assert {format(link.context.trace_id, "032x") for link in linked.links} == {
        "4bf92f3577b34da6a3ce929d0e0e4736", "ab" * 16}
