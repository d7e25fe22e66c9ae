"""Change-stream records and the events they become.

A Spanner change stream reports each committed row change as a data-change record. Each
modified row of a catalog table becomes the same envelope the outbox produces: ``row.changed``
for an insert or update, ``row.deleted`` for a delete, its version the record's commit
timestamp. No payload: a change stream carries no explicit one.

The event id is derived from the table, the key and the commit timestamp, so a record read
twice (a restarted reader, two readers on one partition) becomes the same event, and a writer
that knows its commit timestamp can tell which event its write became.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis_spanner.schemas import versions
from redis_spanner.schemas.envelope import KeyPart, attributes_of, encode_fields
from redis_spanner.schemas.events import SCHEMA_VERSION, EventType

SOURCE_ATTRIBUTE = "source"
SOURCE = "changestream"
_EVENT_IDS = uuid.UUID("6f1d9a52-8c1e-4b43-9d0e-2f6a0c7b8e11")
_MOD_TYPES = {"INSERT": EventType.ROW_CHANGED, "UPDATE": EventType.ROW_CHANGED,
              "DELETE": EventType.ROW_DELETED}


@dataclass(frozen=True, slots=True)
class DataChange:
    """One data-change record: rows of one table changed by one transaction."""

    commit_ts: dt.datetime
    record_sequence: str
    transaction_id: str
    table: str
    mod_type: str
    key_types: Mapping[str, str]
    """Spanner type code of each primary-key column (``STRING``, ``INT64``...)."""
    keys: tuple[Mapping[str, Any], ...]
    """Each modified row's primary key, column name to value as JSON gives it."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Every record of the partition up to ``timestamp`` has been returned."""

    timestamp: dt.datetime


@dataclass(frozen=True, slots=True)
class ChildPartition:
    token: str
    parents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChildPartitions:
    """The partition ends; these partitions carry on from ``start_ts``."""

    start_ts: dt.datetime
    children: tuple[ChildPartition, ...]


Record = DataChange | Heartbeat | ChildPartitions


@dataclass(frozen=True, slots=True)
class ChangeMessage:
    """One event, ready for Pub/Sub."""

    event_id: str
    data: bytes
    attributes: dict[str, str]
    version: int


def event_id_for(table: str, key: Sequence[KeyPart], version: int) -> str:
    """The id of the event a change of ``table``'s row ``key`` committed at ``version`` becomes."""
    name = json.dumps([table, list(key), version], separators=(",", ":"))
    return str(uuid.uuid5(_EVENT_IDS, name))


def records(change_record: Sequence[Mapping[str, Any]]) -> list[Record]:
    """The records of one ``ChangeRecord`` value, structs given as dicts of their fields."""
    out: list[Record] = []
    for element in change_record:
        for data in element.get("data_change_record") or ():
            out.append(_data_change(data))
        for beat in element.get("heartbeat_record") or ():
            out.append(Heartbeat(beat["timestamp"]))
        for child in element.get("child_partitions_record") or ():
            out.append(ChildPartitions(child["start_timestamp"], tuple(
                ChildPartition(c["token"], tuple(c["parent_partition_tokens"] or ()))
                for c in child["child_partitions"] or ()
            )))
    return out


def _data_change(data: Mapping[str, Any]) -> DataChange:
    key_types = {c["name"]: _type_code(c["type"]) for c in data["column_types"]
                 if c["is_primary_key"]}
    return DataChange(
        commit_ts=data["commit_timestamp"],
        record_sequence=data["record_sequence"],
        transaction_id=data["server_transaction_id"],
        table=data["table_name"],
        mod_type=data["mod_type"],
        key_types=key_types,
        keys=tuple(_json(m["keys"]) for m in data["mods"]),
    )


def _type_code(value: Any) -> str:
    parsed = _json(value)
    return str(parsed.get("code", "")) if isinstance(parsed, Mapping) else str(parsed)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def messages(
    change: DataChange, tables: frozenset[str], key_order: Mapping[str, Sequence[str]]
) -> list[ChangeMessage]:
    """The events of one data-change record, for the rows of ``tables`` only.

    ``key_order`` names each table's primary-key columns in key order (the record lists
    columns in table order). Nothing is validated here: the consumer validates and
    dead-letters what breaks the contract, with its reason.
    """
    if change.table not in tables:
        return []
    event_type = _MOD_TYPES.get(change.mod_type, EventType.ROW_CHANGED)
    version = versions.from_datetime(change.commit_ts)
    commit = versions.to_rfc3339(version)
    columns = key_order.get(change.table) or list(change.key_types)
    out = []
    for row_key in change.keys:
        key = [_key_part(row_key.get(c), change.key_types.get(c, "")) for c in columns]
        event_id = event_id_for(change.table, key, version)
        attributes = attributes_of(event_id, str(event_type), change.table, commit,
                                   SCHEMA_VERSION)
        attributes[SOURCE_ATTRIBUTE] = SOURCE
        out.append(ChangeMessage(
            event_id=event_id,
            data=encode_fields(event_id, str(event_type), change.table, key, commit, None,
                               SCHEMA_VERSION),
            attributes=attributes,
            version=version,
        ))
    return out


def _key_part(value: Any, type_code: str) -> Any:
    """JSON gives INT64 as a string; the envelope carries it as an integer."""
    if type_code == "INT64" and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value
