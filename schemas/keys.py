"""Cache-key templates tied to Spanner primary keys.

Every Redis key this project touches is built here, from a declared template and validated
primary-key parts, so an event can never address a key outside its namespace. A key looks like

    <namespace>:<template>:{<Entity>:<part>[:<part>...]}

The braces are a Redis Cluster hash tag: every key of one entity (its row, its derived lists,
its fill lease) lands in the same slot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from redis_spanner.schemas.envelope import Event, KeyPart
from redis_spanner.schemas.errors import KeyRefused
from redis_spanner.schemas.events import INT64_MAX, INT64_MIN, MAX_KEY_PART_LENGTH, EventType

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,47}$")
_NAMESPACE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_STR_PART = re.compile(r"^[A-Za-z0-9._@-]+$")
KEY_PART_PATTERN = _STR_PART.pattern
LEASE_SUFFIX = ":lease"
INTERNAL_MARK = "_"
"""The consumers' own keys (a heal probe, a replication barrier) are ``<namespace>:_<name>``,
optionally followed by a ``{hash tag}``: no template name starts with it, and the namespace's
SCAN pattern (``<namespace>:*:{*}``) never matches one."""


class Action(StrEnum):
    INVALIDATE = "invalidate"
    REWARM = "rewarm"


@dataclass(frozen=True, slots=True)
class Trigger:
    """Events on ``table`` address the template with the event key parts at ``parts``."""

    table: str
    arity: int
    parts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """A cached value and how to rebuild it from Spanner.

    ``columns`` caches one row of ``entity`` (read by primary key); ``query`` caches a derived
    value, the rows of a SQL query whose parameters ``@k0``, ``@k1``... are the key parts.
    """

    name: str
    entity: str
    key_columns: tuple[str, ...]
    triggers: tuple[Trigger, ...]
    action: Action = Action.INVALIDATE
    columns: tuple[str, ...] = ()
    query: str | None = None
    key_types: tuple[str, ...] = ()
    """Spanner type of each key column, ``STRING`` or ``INT64``; all ``STRING`` when empty."""
    version_column: str | None = None
    """A row template's commit-timestamp column, set to ``PENDING_COMMIT_TIMESTAMP()`` by every
    write: lets a reader confirm a cached value with a version-only read."""
    sensitive: tuple[str, ...] = ()
    """Columns stored in Redis encrypted (``redis_spanner.consumers.field_crypto``), and kept
    out of dead letters; for a query template, names of its result columns."""

    def __post_init__(self) -> None:
        if not self.key_types:
            object.__setattr__(self, "key_types", ("STRING",) * len(self.key_columns))
        if len(self.key_types) != len(self.key_columns):
            raise ValueError(f"template {self.name!r}: one key type per key column")
        refused = sorted(set(self.key_types) - {"STRING", "INT64"})
        if refused:
            raise ValueError(
                f"template {self.name!r}: key type {', '.join(refused)} is refused: cache keys "
                "are built from STRING or INT64 primary-key parts only (a TIMESTAMP or BYTES "
                "key column cannot address a cache key; key the template by another column)"
            )
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"template name {self.name!r} must match {_NAME.pattern}")
        if bool(self.columns) == bool(self.query):
            raise ValueError(f"template {self.name!r} needs exactly one of columns or query")
        if self.version_column and self.query:
            raise ValueError(f"template {self.name!r}: version_column is for row templates")
        if self.columns and not set(self.sensitive) <= set(self.columns):
            raise ValueError(f"template {self.name!r}: sensitive columns "
                             f"{sorted(set(self.sensitive) - set(self.columns))} are not cached")
        for trigger in self.triggers:
            if len(trigger.parts) != len(self.key_columns):
                raise ValueError(f"template {self.name!r}: trigger {trigger.table} maps "
                                 f"{len(trigger.parts)} parts onto {len(self.key_columns)}")


@dataclass(frozen=True, slots=True)
class CacheKey:
    """One Redis key with the template and primary-key parts that built it."""

    template: KeyTemplate
    parts: tuple[KeyPart, ...]
    key: str

    @property
    def lease_key(self) -> str:
        return self.key + LEASE_SUFFIX


@dataclass(frozen=True, slots=True)
class KeyTarget:
    """What an event asks of one key."""

    cache_key: CacheKey
    action: Action
    version: int


def validate_part(part: object) -> KeyPart:
    if type(part) is int and INT64_MIN <= part <= INT64_MAX:
        return part
    if (
        isinstance(part, str)
        and 0 < len(part) <= MAX_KEY_PART_LENGTH
        and _STR_PART.fullmatch(part)
    ):
        return part
    shown = repr(part)[:40]
    raise KeyRefused(
        f"key part {shown} refused: integers or 1-{MAX_KEY_PART_LENGTH} characters of "
        "[A-Za-z0-9._@-] only"
    )


@dataclass
class Catalog:
    """The declared templates, indexed by the tables whose events reach them."""

    namespace: str
    templates: Sequence[KeyTemplate]
    _by_table: dict[str, list[tuple[KeyTemplate, Trigger]]] = field(init=False, repr=False)
    _by_name: dict[str, KeyTemplate] = field(init=False, repr=False)
    _shapes: dict[str, _Shape] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAMESPACE.fullmatch(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} must match {_NAMESPACE.pattern}")
        self._by_table = {}
        self._by_name = {}
        self._shapes = {}
        for template in self.templates:
            if template.name in self._by_name:
                raise ValueError(f"template {template.name!r} declared twice")
            self._by_name[template.name] = template
            self._shapes[template.name] = _shape(self.namespace, template)
            for trigger in template.triggers:
                self._by_table.setdefault(trigger.table, []).append((template, trigger))

    @property
    def tables(self) -> frozenset[str]:
        return frozenset(self._by_table)

    def template(self, name: str) -> KeyTemplate:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyRefused(f"no key template named {name[:48]!r}") from None

    def __iter__(self) -> Iterator[KeyTemplate]:
        return iter(self.templates)

    def key(self, template: KeyTemplate, parts: Iterable[object]) -> CacheKey:
        checked = tuple(map(validate_part, parts))
        shape = self._shapes.get(template.name)
        if shape is None or shape[0] is not template:
            shape = _shape(self.namespace, template)
        _, prefix, ints = shape
        if tuple([type(part) is int for part in checked]) != ints:
            if len(checked) != len(ints):
                raise KeyRefused(f"template {template.name!r} takes {len(ints)} key part(s), "
                                 f"got {len(checked)}")
            for part, kind, column in zip(checked, template.key_types, template.key_columns,
                                          strict=True):
                if (kind == "INT64") != (type(part) is int):
                    raise KeyRefused(f"key part for {column} must be {kind}")
        return CacheKey(template, checked, f"{prefix}{':'.join(map(str, checked))}}}")

    def parse(self, key: str) -> CacheKey:
        """The inverse of ``key``, for tools that walk Redis (verify)."""
        prefix = self.namespace + ":"
        if not key.startswith(prefix) or not key.endswith("}") or "{" not in key:
            raise KeyRefused(f"{key[:80]!r} is not a key of namespace {self.namespace!r}")
        name, _, tag = key[len(prefix):-1].partition(":{")
        template = self.template(name)
        entity, *raw = tag.split(":")
        if entity != template.entity:
            raise KeyRefused(f"{key[:80]!r}: entity does not match template {name!r}")
        try:
            parts = [int(p) if kind == "INT64" else p
                     for p, kind in zip(raw, template.key_types, strict=True)]
        except ValueError:
            raise KeyRefused(f"{key[:80]!r} does not match template {name!r}") from None
        built = self.key(template, parts)
        if built.key != key:
            raise KeyRefused(f"{key[:80]!r} does not round-trip")
        return built

    def keys_for_row(self, table: str, key: Sequence[object]) -> list[CacheKey]:
        """Every cache key a row of ``table`` feeds (backfill walks tables with this)."""
        return [t.cache_key for t in self._route(table, tuple(key), Action.REWARM, 0)]

    def route(self, table: str, key: Sequence[object], event_type: EventType) -> list[KeyTarget]:
        """The keys an event of ``event_type`` on this row addresses (tools: ``catalog keys``)."""
        return self._route(table, tuple(key), event_type, 0)

    def targets(self, event: Event) -> list[KeyTarget]:
        """The keys an event touches and what it asks of each. Refuses what is undeclared."""
        return self._route(event.table, event.key, event.type, event.version)

    def _route(
        self, table: str, key: tuple[object, ...], kind: EventType | Action, version: int
    ) -> list[KeyTarget]:
        routes = self._by_table.get(table)
        if not routes:
            raise KeyRefused(f"table {table[:64]!r} has no key templates")
        out: list[KeyTarget] = []
        for template, trigger in routes:
            if len(key) != trigger.arity:
                raise KeyRefused(
                    f"table {table!r} keys have {trigger.arity} part(s), got {len(key)}"
                )
            cache_key = self.key(template, [key[i] for i in trigger.parts])
            action = kind if isinstance(kind, Action) else _action(kind, template)
            out.append(KeyTarget(cache_key, action, version))
        return out

    def sensitive_columns(self, table: str) -> frozenset[str]:
        """The columns of ``table`` that some template marks sensitive."""
        return frozenset(c for t in self._by_name.values() if t.entity == table
                         for c in t.sensitive)

    def pattern(self, template: KeyTemplate | None = None) -> str:
        """A SCAN pattern over this namespace (or one template)."""
        name = template.name if template else "*"
        return f"{self.namespace}:{name}:{{*}}"


_Shape = tuple[KeyTemplate, str, tuple[bool, ...]]


def _shape(namespace: str, template: KeyTemplate) -> _Shape:
    """What every key of ``template`` shares: its text up to the first part, and which of its
    parts are integers."""
    return (template, f"{namespace}:{template.name}:{{{template.entity}:",
            tuple(kind == "INT64" for kind in template.key_types))


def internal_key(namespace: str, name: str, tag: str | None = None) -> str:
    """A key the consumers keep for themselves, never a cached value; with ``tag`` it lands in
    the Redis Cluster slot of every key carrying that hash tag."""
    return f"{namespace}:{INTERNAL_MARK}{name}" + ("" if tag is None else f"{{{tag}}}")


def is_internal(key: str, namespace: str) -> bool:
    return key.startswith(f"{namespace}:{INTERNAL_MARK}")


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes to pick its slot, when it has a hash tag."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1:end] if start >= 0 and end > start + 1 else None


def _action(event_type: EventType, template: KeyTemplate) -> Action:
    if event_type is EventType.ROW_DELETED:
        return Action.INVALIDATE
    if event_type is EventType.ROW_REWARM:
        return Action.REWARM
    return template.action
