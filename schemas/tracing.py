"""Trace context across the outbox: the W3C ``traceparent`` the writer's span had, carried in
the outbox row's ``TraceParent`` column and then in the Pub/Sub attribute ``traceparent``.

Only the OpenTelemetry API is used. Without an SDK configured every span is invalid, so the
writer records NULL and the consumer's spans cost nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import propagate, trace
from opentelemetry.context import Context

ATTRIBUTE = "traceparent"
"""The Pub/Sub attribute (and W3C header name) that carries the context."""
MAX_CHARS = 55
"""A version 00 traceparent is exactly this long (the column is STRING(55))."""
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


@dataclass(frozen=True, slots=True)
class TraceRef:
    """The trace and span ids of one traceparent, as Cloud Logging and logs name them."""

    trace_id: str
    span_id: str


def current_traceparent() -> str | None:
    """The current span's traceparent, or None when there is no valid span (no SDK)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    value = carrier.get(ATTRIBUTE)
    return value if value and parse(value) is not None else None


def parse(traceparent: str | None) -> TraceRef | None:
    """The ids of a well-formed traceparent; None for anything else (never raises)."""
    if not traceparent or len(traceparent) != MAX_CHARS:
        return None
    match = _TRACEPARENT.match(traceparent)
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return TraceRef(match.group(1), match.group(2))


def of_attributes(attributes: Mapping[str, str]) -> TraceRef | None:
    return parse(attributes.get(ATTRIBUTE))


def context_of(traceparent: str) -> Context:
    """The OpenTelemetry context a span continues from ``traceparent``."""
    return propagate.extract({ATTRIBUTE: traceparent})


def span_context_of(traceparent: str) -> trace.SpanContext:
    return trace.get_current_span(context_of(traceparent)).get_span_context()
