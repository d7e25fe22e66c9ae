"""Sensitive columns kept out of dead letters: an event body's payload with the columns the
key templates mark sensitive replaced, for the consumer that dead-letters it and for
``dlq show``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

REDACTED = "[redacted]"
Sensitive = Callable[[str], frozenset[str]]
"""The sensitive columns of a table (``Catalog.sensitive_columns``)."""


def redacted(data: bytes, sensitive: Sensitive | None) -> bytes:
    """``data`` with its payload's sensitive columns replaced by ``REDACTED``; a body that is
    not an event with a payload object, or holds no such column, as it is."""
    if sensitive is None:
        return data
    try:
        body: Any = json.loads(data)
    except (ValueError, RecursionError):
        return data
    if not isinstance(body, dict) or not isinstance(body.get("table"), str) \
            or not isinstance(body.get("payload"), dict):
        return data
    columns = sensitive(body["table"])
    if not columns & body["payload"].keys():
        return data
    payload = {k: REDACTED if k in columns else v for k, v in body["payload"].items()}
    return json.dumps({**body, "payload": payload}, separators=(",", ":"),
                      sort_keys=True).encode()
