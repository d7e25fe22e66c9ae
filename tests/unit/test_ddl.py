"""schema.sql splits into statements, each naming the object it creates; missing ones are found."""

from __future__ import annotations

import re

import pytest
from redis_spanner.infra.spanner.ddl import (
    SCHEMA_PATH,
    DdlError,
    DdlStatement,
    created_object,
    load_schema,
    missing_statements,
    parse_ddl,
    split_statements,
)

SCRIPT = """
-- a comment line; with a semicolon
CREATE TABLE Orders (
  OrderId STRING(64) NOT NULL,  -- trailing comment
  Note STRING(MAX) DEFAULT ('a;b -- not a comment'),
) PRIMARY KEY (OrderId);

/* a block
   comment; */
CREATE UNIQUE NULL_FILTERED INDEX OrdersByNote ON Orders(Note);
# hash comment
CREATE TABLE IF NOT EXISTS `Lines` (OrderId STRING(64) NOT NULL) PRIMARY KEY (OrderId),
  INTERLEAVE IN PARENT Orders ON DELETE CASCADE;
CREATE CHANGE STREAM OrdersStream FOR Orders;
"""


def test_statements_are_split_and_comments_dropped() -> None:
    """Split on ';' outside quotes; line, block and hash comments vanish; blank lines go."""
    statements = split_statements(SCRIPT)
    assert len(statements) == 4
    assert statements[0] == (
        "CREATE TABLE Orders (\n"
        "  OrderId STRING(64) NOT NULL,\n"
        "  Note STRING(MAX) DEFAULT ('a;b -- not a comment'),\n"
        ") PRIMARY KEY (OrderId)"
    )
    assert statements[1] == "CREATE UNIQUE NULL_FILTERED INDEX OrdersByNote ON Orders(Note)"
    assert all("comment;" not in s and "hash" not in s for s in statements)


def test_each_statement_names_the_object_it_creates() -> None:
    """Kind and name are found through UNIQUE, NULL_FILTERED, IF NOT EXISTS and backticks."""
    assert [(s.kind, s.name) for s in parse_ddl(SCRIPT)] == [
        ("TABLE", "Orders"),
        ("INDEX", "OrdersByNote"),
        ("TABLE", "Lines"),
        ("CHANGE STREAM", "OrdersStream"),
    ]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("create table t (a int64) primary key (a)", ("TABLE", "t")),
        ("CREATE SEARCH INDEX  Idx ON T(Tokens)", ("SEARCH INDEX", "Idx")),
        ("CREATE OR REPLACE VIEW V SQL SECURITY INVOKER AS SELECT 1", ("VIEW", "V")),
        ("CREATE SEQUENCE Seq OPTIONS (sequence_kind='bit_reversed_positive')",
         ("SEQUENCE", "Seq")),
        ("CREATE TABLE s.T (A INT64) PRIMARY KEY (A)", ("TABLE", "s.T")),
        ("ALTER TABLE T ADD COLUMN B INT64", None),
    ],
)
def test_created_object(statement: str, expected: tuple[str, str] | None) -> None:
    """Any CREATE form yields (kind, name); other statements yield None."""
    assert created_object(statement) == expected


def test_statement_creating_nothing_is_refused() -> None:
    """schema.sql holds CREATE statements only; an ALTER is an error naming the statement."""
    with pytest.raises(DdlError, match="statement 2 creates no named object"):
        parse_ddl("CREATE TABLE T (A INT64) PRIMARY KEY (A); ALTER TABLE T ADD COLUMN B INT64;")


def test_object_created_twice_is_refused() -> None:
    """Two statements creating the same object (names are case-insensitive) are an error."""
    with pytest.raises(DdlError, match="created twice: TABLE t"):
        parse_ddl("CREATE TABLE T (A INT64) PRIMARY KEY (A);"
                  "CREATE TABLE t (A INT64) PRIMARY KEY (A);")


@pytest.mark.parametrize("script", ["CREATE TABLE T (A STRING(1) DEFAULT ('x)) PRIMARY KEY (A);",
                                    "/* open"])
def test_unclosed_quote_or_comment_is_refused(script: str) -> None:
    """An unclosed quote or block comment is reported, not silently swallowed."""
    with pytest.raises(DdlError, match="not closed"):
        split_statements(script)


def test_missing_statements_compares_with_the_current_ddl() -> None:
    """Only statements whose object is absent are returned, in file order, case-insensitively."""
    wanted = parse_ddl(SCRIPT)
    current = [
        # as Spanner prints it back: other spacing, other case, a trailing comma
        "CREATE TABLE orders (\n  OrderId STRING(64) NOT NULL,\n) PRIMARY KEY(OrderId)",
        "CREATE CHANGE STREAM OrdersStream FOR Orders",
        "CREATE INDEX Unrelated ON Other(X)",
    ]
    missing = missing_statements(wanted, current)
    assert [(s.kind, s.name) for s in missing] == [("INDEX", "OrdersByNote"), ("TABLE", "Lines")]
    assert missing_statements(wanted, [s.text for s in wanted]) == ()
    assert missing_statements(wanted, []) == wanted


def test_same_name_of_another_kind_does_not_count() -> None:
    """An index named like a wanted table does not make the table exist."""
    wanted = (DdlStatement("CREATE TABLE X (A INT64) PRIMARY KEY (A)", "TABLE", "X"),)
    assert missing_statements(wanted, ["CREATE INDEX X ON Y(A)"]) == wanted


def test_project_schema_parses() -> None:
    """The shipped schema.sql parses; the outbox tables are in it."""
    names = {s.name for s in load_schema(SCHEMA_PATH)}
    assert {"Outbox", "OutboxLease"} <= names


def test_terraform_split_agrees_with_the_parser() -> None:
    """infra/terraform's simpler split (drop '--' lines, split on ';') gives the same statements.

    Terraform has no real SQL lexer; this keeps schema.sql within what both can read.
    """
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    kept = "\n".join(line for line in text.splitlines() if not re.match(r"^\s*--", line))
    terraform_style = [s.strip() for s in kept.split(";") if s.strip()]
    parsed = [s.text for s in load_schema(SCHEMA_PATH)]
    assert [_squash(s) for s in terraform_style] == [_squash(s) for s in parsed]


def _squash(statement: str) -> str:
    return " ".join(statement.split())
