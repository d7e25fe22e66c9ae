"""Field encryption's pure parts: the keyring file, sealing and opening by template,
rotation, a removed or altered key, and the redaction of dead letters."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from redis_spanner.consumers.field_crypto import (
    PREFIX,
    FieldCrypto,
    Keyring,
    SealedValueError,
    from_settings,
)
from redis_spanner.consumers.redaction import REDACTED, redacted
from redis_spanner.schemas.cache import FIELD_DATA, FIELD_STATE, FIELD_VERSION, CacheOp
from redis_spanner.schemas.catalog import ACCOUNT, DEMO, TEAM, TEAM_MEMBERS
from redis_spanner.schemas.errors import ConfigError
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

SECRET_ACCOUNT = replace(ACCOUNT, sensitive=("Owner",))
SECRET_MEMBERS = replace(TEAM_MEMBERS, sensitive=("Role",))
CATALOG = Catalog("rsc", (SECRET_ACCOUNT, TEAM, SECRET_MEMBERS))


def key_line(key_id: str, size: int = 32) -> tuple[str, bytes]:
    key = os.urandom(size)
    return f"{key_id}:{base64.b64encode(key).decode()}", key


def crypto(*ids: str) -> FieldCrypto:
    return FieldCrypto(CATALOG, Keyring.parse("\n".join(key_line(i)[0] for i in ids)))


def test_keyring_lines_first_is_primary_and_material_never_shows() -> None:
    """id:base64key lines (comments and blanks skipped) make a keyring whose first key is the
    primary; 16-, 24- and 32-byte keys load; its repr names ids, never key bytes."""
    lines = [key_line("k2", 16), key_line("k1", 24), key_line("k0", 32)]
    ring = Keyring.parse("# rotated 2026-12-01\n\n" + "\n".join(line for line, _ in lines))
    assert ring.primary == "k2" and set(ring.keys) == {"k0", "k1", "k2"}
    assert ring.keys["k1"] == lines[1][1]
    for line, key in lines:
        assert line.split(":")[1] not in repr(ring) and str(key) not in repr(ring)


@pytest.mark.parametrize(("text", "said"), [
    ("", "holds no key"),
    ("# only a comment", "holds no key"),
    ("k1", "line 1: not id:base64key"),
    ("bad id!:AAAA", "line 1: not id:base64key"),
    ("k1:not*base64", "line 1 (key k1): not base64"),
    ("k1:" + base64.b64encode(b"short").decode(), "16, 24 or 32 bytes, not 5"),
    ("\n".join([key_line("k1")[0], key_line("k1")[0]]), "line 2: key id k1 appears twice"),
], ids=["empty", "comment-only", "no-key", "bad-id", "bad-base64", "short-key", "duplicate-id"])
def test_a_bad_keyring_is_a_config_error_naming_the_line_not_the_key(text: str,
                                                                     said: str) -> None:
    """Every malformed keyring is a ConfigError naming REDIS_SPANNER_KEYRING and the line;
    what the line holds after the id is never echoed."""
    with pytest.raises(ConfigError, match="REDIS_SPANNER_KEYRING") as caught:
        Keyring.parse(text)
    assert said in str(caught.value)
    for line in text.splitlines():
        secret = line.partition(":")[2]
        if len(secret) > 8:
            assert secret not in str(caught.value)


def test_a_missing_keyring_file_and_sensitive_columns_without_one_are_config_errors(
    tmp_path: Path,
) -> None:
    """A catalog with sensitive columns and no REDIS_SPANNER_KEYRING, or a keyring path that
    does not exist, is a ConfigError naming the variable; a catalog without sensitive columns
    needs no keyring and gets no crypto step at all."""
    with pytest.raises(ConfigError, match="REDIS_SPANNER_KEYRING"):
        from_settings(Settings(), CATALOG)
    with pytest.raises(ConfigError, match=r"REDIS_SPANNER_KEYRING=.*nope"):
        from_settings(Settings(keyring=tmp_path / "nope"), CATALOG)
    assert from_settings(Settings(), Catalog("rsc", DEMO)) is None
    path = tmp_path / "keyring"
    path.write_text(key_line("k1")[0] + "\n")
    assert from_settings(Settings(keyring=path), CATALOG) is not None


def test_a_sensitive_column_must_be_a_cached_column() -> None:
    """A row template cannot mark a column it does not cache as sensitive."""
    with pytest.raises(ValueError, match="not cached"):
        replace(ACCOUNT, sensitive=("Password",))


VALUES = [
    ("account", ("a-1",), {"Owner": "alice@example.com", "Balance": 12}),
    ("account", ("a-2",), {"Owner": None, "Balance": 0}),
    ("account", ("a-3",), {"Owner": "owner \u00e9\u2028\"quoted\"", "Balance": -5}),
    ("team-members", (7,), [{"MemberId": "m1", "Role": "admin-role"},
                            {"MemberId": "m2", "Role": "viewer-role"}]),
]


def test_sensitive_columns_are_sealed_opened_and_never_in_the_clear() -> None:
    """Each sensitive column of a row or derived value is sealed with the primary key's id in
    it and no plaintext byte of it left; other columns stay readable; opening gives back
    exactly the cached JSON the guard would have stored in the clear. Keys of templates
    without sensitive columns and tombstones pass untouched."""
    box = crypto("k1")
    for name, parts, value in VALUES:
        key = CATALOG.key(CATALOG.template(name), parts).key
        op = CacheOp.set(key, 100, value)
        [sealed] = box.seal_ops([op])
        assert sealed.data != op.data and sealed.data is not None
        stored = json.loads(sealed.data)
        rows = stored if isinstance(stored, list) else [stored]
        for row, original in zip(rows, value if isinstance(value, list) else [value],
                                 strict=True):
            secret_column = "Owner" if name == "account" else "Role"
            assert row[secret_column].startswith(f"{PREFIX}k1:")
            if original[secret_column]:
                assert json.dumps(original[secret_column])[1:-1] not in sealed.data
            assert {k: v for k, v in row.items() if k != secret_column} == \
                {k: v for k, v in original.items() if k != secret_column}
        assert box.open(key, sealed.data) == op.data
    team = CATALOG.key(TEAM, (1,)).key
    plain = [CacheOp.set(team, 1, {"Name": "x"}), CacheOp.invalidate(team, 2)]
    assert box.seal_ops(plain) == plain
    account = CATALOG.key(SECRET_ACCOUNT, ("a-1",)).key
    assert box.seal_ops([CacheOp.invalidate(account, 3)]) == [CacheOp.invalidate(account, 3)]


def test_rotation_old_keys_open_until_removed_then_the_entry_is_a_miss() -> None:
    """After a new primary is put first, values sealed with the old key still open and new
    writes carry the new key's id; once the old key is removed, its values read as a miss
    (an empty hash), never an error."""
    ring_old = "\n".join([key_line("old")[0]])
    new_line, _ = key_line("new")
    old_box = FieldCrypto(CATALOG, Keyring.parse(ring_old))
    rotated = FieldCrypto(CATALOG, Keyring.parse(new_line + "\n" + ring_old))
    removed = FieldCrypto(CATALOG, Keyring.parse(new_line))
    key = CATALOG.key(SECRET_ACCOUNT, ("a-1",)).key
    op = CacheOp.set(key, 100, {"Owner": "alice", "Balance": 1})
    [by_old] = old_box.seal_ops([op])
    fields = {FIELD_VERSION: "1", FIELD_STATE: "v", FIELD_DATA: str(by_old.data)}
    assert rotated.open_fields(key, fields)[FIELD_DATA] == op.data  # type: ignore[index]
    [by_new] = rotated.seal_ops([op])
    assert f"{PREFIX}new:" in str(by_new.data)
    assert removed.open_fields(key, fields) == {}
    with pytest.raises(SealedValueError, match="key 'old', which is not in"):
        removed.open(key, str(by_old.data))


def test_a_sealed_value_moved_altered_or_unsealed_does_not_open() -> None:
    """A sealed value copied to another key, a flipped ciphertext byte, or a sensitive column
    stored in the clear is a SealedValueError (read as a miss), never a wrong value."""
    box = crypto("k1")
    a1, a2 = (CATALOG.key(SECRET_ACCOUNT, (i,)).key for i in ("a-1", "a-2"))
    [sealed] = box.seal_ops([CacheOp.set(a1, 1, {"Owner": "alice", "Balance": 1})])
    with pytest.raises(SealedValueError, match="does not open"):
        box.open(a2, str(sealed.data))
    row = json.loads(str(sealed.data))
    blob = bytearray(base64.b64decode(row["Owner"].rsplit(":", 1)[1]))
    blob[-1] ^= 1
    row["Owner"] = f"{PREFIX}k1:{base64.b64encode(bytes(blob)).decode()}"
    with pytest.raises(SealedValueError, match="does not open"):
        box.open(a1, json.dumps(row))
    with pytest.raises(SealedValueError, match="not sealed"):
        box.open(a1, json.dumps({"Owner": "alice", "Balance": 1}))


def test_dead_letter_bodies_lose_their_sensitive_payload_columns() -> None:
    """An event body's payload keeps its other columns and shows [redacted] for sensitive
    ones; bodies that are not events, or tables without sensitive columns, are unchanged."""
    body = json.dumps({"table": "Accounts", "event_id": "e1",
                       "payload": {"Owner": "alice-secret", "Balance": 3}}).encode()
    out = redacted(body, CATALOG.sensitive_columns)
    assert b"alice-secret" not in out
    assert json.loads(out)["payload"] == {"Owner": REDACTED, "Balance": 3}
    for other in (b"{not json", b"[1,2]", json.dumps({"table": "Teams", "payload": {
            "Name": "n"}}).encode(), json.dumps({"table": "Accounts"}).encode()):
        assert redacted(other, CATALOG.sensitive_columns) == other
    assert redacted(body, None) == body
