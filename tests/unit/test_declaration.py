"""infra/pipeline.json loads into typed policies, and a bad declaration fails before any call."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from redis_spanner.infra.provision.declaration import (
    DEFAULT_PATH,
    Declaration,
    DeclarationError,
    load_declaration,
    parse_declaration,
)


@pytest.fixture
def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def test_packaged_declaration_loads_into_frozen_policies() -> None:
    """The shipped pipeline.json is valid, typed, immutable, and points at the shipped DDL."""
    declaration = load_declaration()
    assert isinstance(declaration, Declaration)
    assert declaration.subscription.enable_message_ordering is False
    assert 5 <= declaration.subscription.max_delivery_attempts <= 100
    assert declaration.ddl_path.is_file()
    with pytest.raises(dataclasses.FrozenInstanceError):
        declaration.subscription.ack_deadline_seconds = 1  # type: ignore[misc]


def test_values_come_from_the_file(raw: dict[str, Any], tmp_path: Path) -> None:
    """Every policy value is read from the declaration, none is a hidden default."""
    raw["subscription"]["ack_deadline_seconds"] = 42
    raw["subscription"]["max_delivery_attempts"] = 7
    raw["dead_letter_topic"]["message_retention_seconds"] = 3600
    (tmp_path / "spanner").mkdir()
    (tmp_path / "spanner" / "schema.sql").write_text("CREATE TABLE T (A INT64) PRIMARY KEY (A);")
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(raw), encoding="utf-8")

    declaration = load_declaration(path)

    assert declaration.subscription.ack_deadline_seconds == 42
    assert declaration.subscription.max_delivery_attempts == 7
    assert declaration.dead_letter_topic.message_retention_seconds == 3600
    assert declaration.ddl_path == tmp_path / "spanner" / "schema.sql"


def test_comment_keys_are_ignored(raw: dict[str, Any]) -> None:
    """Keys starting with '_' are comments, at the top and inside sections."""
    raw["_note"] = "anything"
    raw["subscription"]["_why"] = "anything"
    assert parse_declaration(raw).subscription == load_declaration().subscription


def test_message_ordering_is_refused(raw: dict[str, Any]) -> None:
    """Ordering is refused: the emulator cannot pull with ordering plus dead-lettering."""
    raw["subscription"]["enable_message_ordering"] = True
    with pytest.raises(DeclarationError, match="enable_message_ordering must be false"):
        parse_declaration(raw)


@pytest.mark.parametrize("attempts", [0, 4, 101])
def test_max_delivery_attempts_outside_5_to_100_is_refused(
    raw: dict[str, Any], attempts: int
) -> None:
    """Pub/Sub accepts 5..100 delivery attempts; anything else fails with the key's name."""
    raw["subscription"]["max_delivery_attempts"] = attempts
    with pytest.raises(DeclarationError, match=r"subscription\.max_delivery_attempts is"):
        parse_declaration(raw)


@pytest.mark.parametrize("attempts", [5, 100])
def test_max_delivery_attempts_bounds_are_accepted(raw: dict[str, Any], attempts: int) -> None:
    """The limits themselves are valid."""
    raw["subscription"]["max_delivery_attempts"] = attempts
    assert parse_declaration(raw).subscription.max_delivery_attempts == attempts


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("subscription", "ack_deadline_seconds", 5, "between 10 and 600"),
        ("subscription", "message_retention_seconds", 8 * 24 * 3600, "between 600 and 604800"),
        ("subscription", "retry_maximum_backoff_seconds", 0, "retry_maximum_backoff_seconds"),
        ("subscription", "retry_minimum_backoff_seconds", 601, "retry_minimum_backoff_seconds"),
        ("topic", "message_retention_seconds", 60, "topic.message_retention_seconds"),
        ("dead_letter_subscription", "ack_deadline_seconds", 601, "between 10 and 600"),
        ("spanner", "processing_units", 150, "multiple of 100"),
        ("spanner", "processing_units", 1500, "multiple of 1000"),
        ("spanner", "ddl_file", "spanner/nope.sql", "does not exist"),
    ],
)
def test_values_outside_api_limits_are_refused(
    raw: dict[str, Any], section: str, key: str, value: object, message: str
) -> None:
    """Each API limit is checked locally, and the error names the limit."""
    raw[section][key] = value
    with pytest.raises(DeclarationError, match=message):
        parse_declaration(raw)


def test_missing_key_is_named(raw: dict[str, Any]) -> None:
    """A missing required value names its section and key."""
    del raw["subscription"]["ack_deadline_seconds"]
    with pytest.raises(DeclarationError, match=r"subscription\.ack_deadline_seconds is missing"):
        parse_declaration(raw)


def test_missing_section_is_named(raw: dict[str, Any]) -> None:
    """A missing section is named."""
    del raw["dead_letter_subscription"]
    with pytest.raises(DeclarationError, match="no 'dead_letter_subscription' section"):
        parse_declaration(raw)


def test_unknown_key_is_refused(raw: dict[str, Any]) -> None:
    """A misspelt key is an error, not a silently ignored setting."""
    raw["subscription"]["ack_deadline_secs"] = 30
    with pytest.raises(DeclarationError, match=r"unknown key.*ack_deadline_secs"):
        parse_declaration(raw)


@pytest.mark.parametrize("value", ["30", 30.5, True])
def test_wrong_json_type_is_refused(raw: dict[str, Any], value: object) -> None:
    """Numbers must be JSON integers: no strings, floats or booleans standing in for them."""
    raw["subscription"]["ack_deadline_seconds"] = value
    with pytest.raises(DeclarationError, match="must be a JSON int"):
        parse_declaration(raw)


def test_unreadable_file_is_a_declaration_error(tmp_path: Path) -> None:
    """A missing or malformed file raises DeclarationError with the path."""
    with pytest.raises(DeclarationError, match=r"nope\.json"):
        load_declaration(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(DeclarationError, match=r"broken\.json"):
        load_declaration(broken)
