"""Event types and the limits of the contract."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    ROW_CHANGED = "row.changed"
    """A row was inserted or updated: its key rules decide between invalidate and rewarm."""

    ROW_DELETED = "row.deleted"
    """A row is gone: its keys are always invalidated (tombstoned), never rewarmed."""

    ROW_REWARM = "row.rewarm"
    """Asks for a rewarm of the row's keys whatever their rule says (backfill, repair)."""


SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

# Pub/Sub refuses messages over 10 MB (data plus attributes); keep a margin for attributes.
MAX_MESSAGE_BYTES = 10_000_000 - 64 * 1024
MAX_KEY_PARTS = 8
MAX_KEY_PART_LENGTH = 128
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
