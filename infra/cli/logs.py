"""Log output for every command: JSON lines in Cloud Logging's format, or console lines.

Code everywhere logs through the standard ``logging`` module and passes what a line is about
as ``extra`` fields: ``event_id``, ``key``, ``trace_id`` (32 hex digits), counts and timings.
This module renders those records with structlog:

- ``json`` (the default when stderr is not a terminal, as on Cloud Run): one JSON object per
  line with ``severity``, ``message``, ``time``, the extra fields, and, when the project is
  known, ``logging.googleapis.com/trace`` so Cloud Logging ties the line to its trace;
- ``console`` (the default on a terminal): readable lines.

``REDIS_SPANNER_LOG_FORMAT=json|console`` chooses one. Whatever the format, every string in a
line has its control characters escaped (a newline or an ANSI escape in a field name from a
message can't start a forged line or recolour a terminal) and is cut to ``MAX_CHARS``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from redis_spanner.schemas.errors import ConfigError
from structlog.typing import Processor

FORMAT_VARIABLE = "REDIS_SPANNER_LOG_FORMAT"
FORMATS = ("json", "console")
MAX_CHARS = 2000
"""Longest string kept in a line (the message included); longer ones end in ``…``."""
TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_Step = Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]


def clean(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` with control characters written as escapes, cut to ``limit`` characters."""
    text = _UNSAFE.sub(_escape, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}"
                                                       if ord(char) < 0x100
                                                       else f"\\u{ord(char):04x}")


def _clean_strings(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Every string but a traceback (which JSON escapes, and which stays whole for Error
    Reporting) is escaped and cut."""
    for name, value in event.items():
        if name == "exception":
            continue
        if isinstance(value, str):
            event[name] = clean(value)
        elif isinstance(value, list | tuple):
            event[name] = [clean(v) if isinstance(v, str) else v for v in value]
    return event


def _cloud_fields(project: str | None) -> _Step:
    """``severity`` from the level, and the trace fields Cloud Logging reads."""

    def add(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["severity"] = str(event.pop("level", "info")).upper()
        trace_id = event.get("trace_id")
        if project and isinstance(trace_id, str):
            event[TRACE_FIELD] = f"projects/{project}/traces/{trace_id}"
            span_id = event.get("span_id")
            if isinstance(span_id, str):
                event[SPAN_FIELD] = span_id
        return event

    return add


def log_format(environ: MutableMapping[str, str] | None = None) -> str:
    """The format named by ``REDIS_SPANNER_LOG_FORMAT``, else json unless stderr is a terminal."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(FORMAT_VARIABLE, "").strip().lower()
    if not chosen:
        return "console" if sys.stderr.isatty() else "json"
    if chosen not in FORMATS:
        raise ConfigError(f"{FORMAT_VARIABLE} must be json or console")
    return chosen


def formatter(fmt: str, project: str | None) -> logging.Formatter:
    """A ``logging.Formatter`` rendering records in ``fmt`` (``json`` or ``console``)."""
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]
    if fmt == "json":
        final: list[Processor] = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _cloud_fields(project),
            _clean_strings,
            structlog.processors.JSONRenderer(),
        ]
    else:
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _clean_strings,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                          exception_formatter=structlog.dev.plain_traceback),
        ]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)


def setup(level: int, environ: MutableMapping[str, str] | None = None) -> None:
    """Send every record at ``level`` or above to stderr in the chosen format."""
    environ = os.environ if environ is None else environ
    fmt = log_format(environ)
    handler = _Handler(sys.stderr)
    handler.setFormatter(formatter(fmt, environ.get("GOOGLE_CLOUD_PROJECT") or None))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:  # set up once
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so a second ``setup`` replaces it and leaves others' handlers alone."""
