"""What the consumer tells operators about a batch: its span, which continues the writers'
traces, and its log fields. Kept off the per-message path: each distinct traceparent of a batch
is parsed once, and the batch's -v line is built only when DEBUG is on."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from redis_spanner.consumers.messages import Disposition, Inbound, Outcome
from redis_spanner.schemas import tracing
from redis_spanner.schemas.envelope import Event

_tracer = trace.get_tracer("redis_spanner.consumers")
LOGGED_IDS = 20
"""A batch's log line names at most this many event ids and traces."""


def about(message: Inbound, event: Event | None) -> dict[str, Any]:
    """The log fields naming one message: its event id, key and trace (untrusted text: the
    log formatter escapes and cuts it)."""
    fields: dict[str, Any] = {"message_id": message.message_id}
    if event is not None:
        fields["event_id"] = event.event_id
        fields["key"] = f"{event.table}/{'/'.join(str(p) for p in event.key)}"
    elif "event_id" in message.attributes:
        fields["event_id"] = message.attributes["event_id"]
    ref = tracing.of_attributes(message.attributes)
    if ref is not None:
        fields["trace_id"], fields["span_id"] = ref.trace_id, ref.span_id
    return fields


@contextmanager
def batch_span(batch: Sequence[Inbound]) -> Iterator[None]:
    """A span for the batch that continues the writers' traces: the child of the one trace
    when the batch has one, else linked to each."""
    carried = {m.attributes.get(tracing.ATTRIBUTE) for m in batch}
    parents = {tp for tp in carried if tp and tracing.parse(tp)}
    if len(parents) == 1:
        context, links = tracing.context_of(next(iter(parents))), None
    else:
        context = None
        links = [trace.Link(tracing.span_context_of(tp)) for tp in sorted(parents)]
    with _tracer.start_as_current_span("redis_spanner.consumer.batch", context=context,
                                       links=links, attributes={"messages": len(batch)}):
        yield


def log_batch(log: logging.Logger, done: list[Outcome], elapsed: float) -> None:
    """The -v line of one batch: counts, timing, and the events' ids and traces."""
    counts = {"changed": 0, "superseded": 0, "dead_lettered": 0, "nacked": 0}
    for o in done:
        if o.dead_letter_reason:
            counts["dead_lettered"] += 1
        elif o.disposition is Disposition.NACK:
            counts["nacked"] += 1
        else:
            counts["changed" if o.changed else "superseded"] += 1
    ids = [o.event.event_id for o in done if o.event is not None][:LOGGED_IDS]
    carried = {o.message.attributes.get(tracing.ATTRIBUTE) for o in done}
    refs = [r for tp in carried if tp and (r := tracing.parse(tp))]
    fields: dict[str, Any] = {**counts, "messages": len(done), "seconds": round(elapsed, 6),
                              "event_ids": ids}
    traces = sorted({r.trace_id for r in refs})
    if len(traces) == 1:
        fields["trace_id"] = traces[0]
    elif traces:
        fields["trace_ids"] = traces[:LOGGED_IDS]
    if len(done) == 1:
        fields.update(about(done[0].message, done[0].event))
    log.debug("batch of %d: %d changed, %d superseded, %d dead-lettered, %d nacked in %.1f ms",
              len(done), counts["changed"], counts["superseded"], counts["dead_lettered"],
              counts["nacked"], elapsed * 1000, extra=fields)

