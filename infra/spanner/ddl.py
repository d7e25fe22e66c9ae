"""Spanner DDL: split schema.sql into statements and say which object each one creates.

Provisioning compares these objects with a database's current DDL and applies only the
statements whose object does not exist yet. So schema.sql holds CREATE statements only;
changing an existing table takes a separate, reviewed migration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from redis_spanner.schemas.errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("schema.sql")
"""The pipeline's own tables: the outbox and the relay's leases."""
DEMO_SCHEMA_PATH = Path(__file__).with_name("demo.sql")
"""The demo's tables (Accounts, Teams, Members), applied by ``demo``, ``bench`` and the tests."""
CHANGESTREAM_PATH = Path(__file__).with_name("changestream.sql")
"""Applied only when events come from a change stream (``REDIS_SPANNER_SOURCE``)."""

_QUOTES = ("'''", '"""', "'", '"', "`")
_CREATE = re.compile(
    r"""CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+)?(?:NULL_FILTERED\s+)?
        (?P<kind>TABLE|INDEX|SEARCH\s+INDEX|VECTOR\s+INDEX|VIEW|CHANGE\s+STREAM|SEQUENCE
                |ROLE|MODEL|PROPERTY\s+GRAPH|SCHEMA|LOCALITY\s+GROUP|PLACEMENT)\s+
        (?:IF\s+NOT\s+EXISTS\s+)?
        (?P<name>(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)(?:\.(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*))*)""",
    re.IGNORECASE | re.VERBOSE,
)


class DdlError(ConfigError):
    """schema.sql cannot be split, or one of its statements creates no named object."""


@dataclass(frozen=True)
class DdlStatement:
    text: str
    kind: str  # upper case, single spaces: "TABLE", "INDEX", "CHANGE STREAM", ...
    name: str  # without backticks, as written

    @property
    def key(self) -> tuple[str, str]:
        """Spanner names are case-insensitive: compare objects by this."""
        return self.kind, self.name.casefold()


def split_statements(sql: str) -> list[str]:
    """The statements of a DDL script: comments dropped, split on ';' outside quotes."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(sql):
        if quote is not None:
            if sql[i] == "\\":
                current.append(sql[i : i + 2])
                i += 2
            elif sql.startswith(quote, i):
                current.append(quote)
                i += len(quote)
                quote = None
            else:
                current.append(sql[i])
                i += 1
        elif sql.startswith("--", i) or sql[i] == "#":
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise DdlError("a /* comment is not closed")
            current.append(" ")
            i = end + 2
        elif sql[i] == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            quote = next((q for q in _QUOTES if sql.startswith(q, i)), None)
            token = quote or sql[i]
            current.append(token)
            i += len(token)
    if quote is not None:
        raise DdlError(f"a {quote} quote is not closed")
    statements.append("".join(current))
    return [tidy for text in statements if (tidy := _tidy(text))]


def created_object(statement: str) -> tuple[str, str] | None:
    """(kind, name) of the object a CREATE statement makes, or None for any other statement."""
    match = _CREATE.match(statement.strip())
    if match is None:
        return None
    kind = " ".join(match["kind"].upper().split())
    return kind, match["name"].replace("`", "")


def parse_ddl(sql: str) -> tuple[DdlStatement, ...]:
    """Every statement of a DDL script, each with the object it creates."""
    parsed = []
    for number, text in enumerate(split_statements(sql), start=1):
        made = created_object(text)
        if made is None:
            first_line = text.splitlines()[0]
            raise DdlError(
                f"statement {number} creates no named object ({first_line!r}): the schema "
                "file holds CREATE statements only, applied when their object is missing"
            )
        parsed.append(DdlStatement(text=text, kind=made[0], name=made[1]))
    keys = [statement.key for statement in parsed]
    duplicates = sorted({f"{kind} {name}" for kind, name in keys if keys.count((kind, name)) > 1})
    if duplicates:
        raise DdlError(f"created twice: {', '.join(duplicates)}")
    return tuple(parsed)


def load_schema(path: Path | str = SCHEMA_PATH) -> tuple[DdlStatement, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise DdlError(f"cannot read the DDL file {path}: {e.strerror or e}") from e
    try:
        return parse_ddl(text)
    except DdlError as e:
        raise DdlError(f"{path}: {e}") from e


def load_schemas(paths: Iterable[Path | str]) -> tuple[DdlStatement, ...]:
    """The statements of several DDL files, in order; an object created twice is an error."""
    statements = tuple(s for path in paths for s in load_schema(path))
    keys = [s.key for s in statements]
    twice = sorted({f"{kind} {name}" for kind, name in keys if keys.count((kind, name)) > 1})
    if twice:
        raise DdlError(f"created by more than one DDL file: {', '.join(twice)}")
    return statements


def missing_statements(
    wanted: Sequence[DdlStatement], current_ddl: Iterable[str]
) -> tuple[DdlStatement, ...]:
    """The wanted statements whose object is absent from a database's current DDL, in order."""
    existing = set()
    for text in current_ddl:
        made = created_object(text)
        if made is not None:
            existing.add((made[0], made[1].casefold()))
    return tuple(statement for statement in wanted if statement.key not in existing)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(line for line in lines if line.strip())
