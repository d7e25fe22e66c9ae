"""The wire contract, published for other languages: generated from this package's own code.

``python -m redis_spanner.schemas.contract`` writes, next to this module,

- ``envelope.schema.json``: a JSON Schema (2020-12) of the event envelope (the Pub/Sub message
  body), with the message's attributes and a cache entry (the Redis hash) under ``$defs``;
- ``guard.lua``: the compare-and-set script every cache write goes through.

``--check`` writes nothing and exits 1 if a shipped file differs from what the code says.
CONTRACT.md explains both in prose.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from redis_spanner.schemas import cache, envelope, events, keys, versions

HERE = Path(__file__).parent
SCHEMA_PATH = HERE / "envelope.schema.json"
GUARD_PATH = HERE / "guard.lua"
SCHEMA_ID = "https://github.com/redis-spanner/redis-spanner/schemas/envelope.schema.json"

_RFC3339_DOC = ("The commit timestamp of the producing transaction: RFC 3339 in UTC, up to nine "
                "fractional digits. It is the event's version.")


def _key_part() -> dict[str, Any]:
    return {
        "oneOf": [
            {"type": "integer", "minimum": events.INT64_MIN, "maximum": events.INT64_MAX},
            {"type": "string", "minLength": 1, "maxLength": events.MAX_KEY_PART_LENGTH,
             "pattern": keys.KEY_PART_PATTERN},
        ],
    }


def envelope_schema() -> dict[str, Any]:
    """The JSON Schema of the envelope, its attributes and a cache entry."""
    event_types = [t.value for t in events.EventType]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "redis-spanner event envelope",
        "description": (
            "The body of one Pub/Sub message on the events topic: UTF-8 JSON. A message that "
            "breaks this schema is dead-lettered by the consumer with its reason."),
        "type": "object",
        "required": ["schema_version", "event_id", "type", "table", "key", "commit_ts"],
        "additionalProperties": False,
        "properties": {
            "schema_version": {"enum": sorted(events.SUPPORTED_SCHEMA_VERSIONS),
                               "description": "The envelope's version."},
            "event_id": {"type": "string", "pattern": envelope.EVENT_ID_PATTERN,
                         "description": "Minted once by the producer; a duplicate or replay "
                                        "carries the same id."},
            "type": {"enum": event_types, "description": (
                "row.changed: the key rule decides invalidate or rewarm; row.deleted: always "
                "invalidate; row.rewarm: always rewarm.")},
            "table": {"type": "string", "pattern": envelope.TABLE_PATTERN,
                      "description": "The Spanner table of the changed row."},
            "key": {"type": "array", "minItems": 1, "maxItems": events.MAX_KEY_PARTS,
                    "items": _key_part(),
                    "description": "The changed row's primary key, in key order."},
            "commit_ts": {"type": "string", "pattern": versions.RFC3339_PATTERN,
                          "description": _RFC3339_DOC},
            "payload": {"type": ["object", "null"],
                        "description": "Optional small JSON object, carried as it is."},
        },
        "$defs": {"attributes": _attributes(event_types), "cacheEntry": _cache_entry()},
    }


def _attributes(event_types: list[str]) -> dict[str, Any]:
    sample = envelope.attributes_of("x" * 8, event_types[0], "T", "1970-01-01T00:00:00Z",
                                    events.SCHEMA_VERSION)
    specs: dict[str, Any] = {
        "event_id": {"type": "string", "maxLength": 256},
        "event_type": {"type": "string", "maxLength": 256},
        "table": {"type": "string", "maxLength": 256},
        "schema_version": {"type": "string", "pattern": "^[0-9]+$"},
        "commit_ts": {"type": "string", "pattern": versions.RFC3339_PATTERN},
    }
    # Every attribute the code sets, and only those (a new one without a spec is a KeyError).
    properties = {name: specs[name] for name in sample}
    return {
        "description": (
            "Pub/Sub attributes of an event message, copied from the body to filter and triage "
            "without decoding it. The consumer decides on the body alone. Replayed dead letters "
            "add replayed_from and replay_count; dead letters add dl_* attributes."),
        "type": "object",
        "required": sorted(properties),
        "properties": properties,
        "additionalProperties": {"type": "string"},
    }


def _cache_entry() -> dict[str, Any]:
    return {
        "description": (
            "A cache entry: a Redis hash at <namespace>:<template>:{<Entity>:<part>...}. Written "
            "only through guard.lua. Any other shape at such a key is foreign: read it as a miss."),
        "type": "object",
        "required": [cache.FIELD_VERSION, cache.FIELD_STATE],
        "additionalProperties": False,
        "properties": {
            cache.FIELD_VERSION: {
                "type": "string", "pattern": f"^[0-9]{{{versions.VERSION_WIDTH}}}$",
                "description": "Nanoseconds since the epoch, zero-padded to "
                               f"{versions.VERSION_WIDTH} digits: compare as strings."},
            cache.FIELD_STATE: {
                "enum": [cache.STATE_VALUE, cache.STATE_TOMBSTONE],
                "description": "v: a value; t: a tombstone (a miss that refuses older fills)."},
            cache.FIELD_DATA: {
                "type": "string",
                "description": "The value as JSON (values only): a row object, an array of rows "
                               "for a query template, or null for a missing row."},
        },
        "if": {"properties": {cache.FIELD_STATE: {"const": cache.STATE_VALUE}}},
        "then": {"required": [cache.FIELD_DATA]},
        "else": {"not": {"required": [cache.FIELD_DATA]}},
    }


def guard_script() -> str:
    header = (
        "-- The compare-and-set every cache write goes through (redis_spanner.schemas.cache).\n"
        "-- Generated by `python -m redis_spanner.schemas.contract`: do not edit.\n"
        "-- KEYS[1] the entry. ARGV[1] 'inv' (tombstone) or 'set' (value);\n"
        f"-- ARGV[2] the version, {versions.VERSION_WIDTH} digits; ARGV[3] the value's JSON "
        "('' for 'inv');\n"
        "-- ARGV[4] the TTL in milliseconds; ARGV[5] the newest version accepted now (this "
        "clock plus\n"
        "-- the allowed skew), 20 digits. Returns {applied 1|0, version held before or '', "
        "foreign kind or ''}.\n"
    )
    return header + cache.GUARD.lstrip("\n")


def rendered() -> dict[Path, str]:
    """Each shipped file and the text the code makes of it."""
    return {SCHEMA_PATH: json.dumps(envelope_schema(), indent=2) + "\n",
            GUARD_PATH: guard_script()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in rendered().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if check:
            stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}: run python -m redis_spanner.schemas.contract",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
