"""Field encryption: the columns a key template marks ``sensitive`` are stored in Redis
encrypted with AES-GCM, each value carrying the id of the key that sealed it.

A sealed column value is the string ``rsenc:v1:<key id>:<base64(nonce || ciphertext+tag)>``
in place of the column's cached JSON; its plaintext is that JSON, and the Redis key and the
column name are its associated data, so a sealed value moved to another key or column does not
open. Other columns, tombstones and versions stay as they are, so the guard, ``verify`` and
readers in other languages see the same entry layout.

Keys come from the keyring file ``REDIS_SPANNER_KEYRING``: one ``id:base64key`` per line
(16, 24 or 32 bytes), the first is the primary. Writes seal with the primary; any key still in
the file opens what it sealed. Rotation: put the new key first, keep the old ones; values are
re-sealed as they are rewritten, ``rewarm`` rewrites them all; then remove the old key. A value
whose key is gone reads as a miss (the reader refills it, sealed with the primary).

Nothing here runs when no template marks a column sensitive.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis_spanner.schemas.cache import FIELD_DATA, OP_SET, CacheOp
from redis_spanner.schemas.errors import ConfigError, PermanentError
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "rsenc:v1:"
KEYRING_VARIABLE = "REDIS_SPANNER_KEYRING"
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
_NONCE = 12


class SealedValueError(PermanentError):
    """A sealed value that does not open: its key is not in the keyring, or it was altered."""

    reason = "sealed-value"


@dataclass(frozen=True)
class Keyring:
    primary: str
    keys: Mapping[str, bytes]

    def __repr__(self) -> str:  # never the key material
        return f"Keyring(primary={self.primary!r}, ids={sorted(self.keys)!r})"

    @classmethod
    def parse(cls, text: str, where: str = KEYRING_VARIABLE) -> Keyring:
        """``id:base64key`` lines; blank lines and ``#`` comments are skipped. A
        ``ConfigError`` names the line, never what it holds."""
        keys: dict[str, bytes] = {}
        primary = None
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key_id, sep, encoded = line.partition(":")
            if not sep or not _KEY_ID.fullmatch(key_id):
                raise ConfigError(f"{where} line {number}: not id:base64key (an id is 1-32 "
                                  "characters of [A-Za-z0-9._-])")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"{where} line {number} (key {key_id}): not base64") from None
            if len(key) not in (16, 24, 32):
                raise ConfigError(f"{where} line {number} (key {key_id}): an AES key is 16, 24 "
                                  f"or 32 bytes, not {len(key)}")
            if key_id in keys:
                raise ConfigError(f"{where} line {number}: key id {key_id} appears twice")
            keys[key_id] = key
            primary = primary or key_id
        if primary is None:
            raise ConfigError(f"{where} holds no key")
        return cls(primary, keys)

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"{KEYRING_VARIABLE}={path}: {e.strerror or e}") from None
        return cls.parse(text, f"{KEYRING_VARIABLE}={path}")


class FieldCrypto:
    """Seals and opens the sensitive columns of cached values, by template."""

    def __init__(self, catalog: Catalog, keyring: Keyring) -> None:
        self._prefix = catalog.namespace + ":"
        self._sensitive = {t.name: frozenset(t.sensitive) for t in catalog if t.sensitive}
        self._keyring = keyring
        self._aead = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    def __repr__(self) -> str:
        return f"FieldCrypto({self._keyring!r})"

    def columns(self, key: str) -> frozenset[str]:
        """The sensitive columns of the template behind ``key`` (none for other keys)."""
        if not key.startswith(self._prefix):
            return frozenset()
        name = key[len(self._prefix):].partition(":")[0]
        return self._sensitive.get(name, frozenset())

    def seal_ops(self, ops: Sequence[CacheOp]) -> list[CacheOp]:
        return [self._seal_op(op) for op in ops]

    def _seal_op(self, op: CacheOp) -> CacheOp:
        columns = self.columns(op.key)
        if not columns or op.op != OP_SET or op.data is None:
            return op
        return replace(op, data=self.seal(op.key, op.data, columns))

    def seal(self, key: str, data: str, columns: frozenset[str]) -> str:
        value = json.loads(data)
        key_id = self._keyring.primary
        aead = self._aead[key_id]

        def sealed(row: Any) -> Any:
            if not isinstance(row, dict):
                return row
            out = dict(row)
            for column in columns & row.keys():
                nonce = os.urandom(_NONCE)
                plain = json.dumps(row[column], separators=(",", ":"), sort_keys=True)
                box = aead.encrypt(nonce, plain.encode(), _aad(key, column))
                out[column] = f"{PREFIX}{key_id}:{base64.b64encode(nonce + box).decode()}"
            return out

        shaped = [sealed(r) for r in value] if isinstance(value, list) else sealed(value)
        return json.dumps(shaped, separators=(",", ":"), sort_keys=True)

    def open(self, key: str, data: str) -> str:
        """The cached JSON with every sealed column opened. Raises ``SealedValueError``."""
        columns = self.columns(key)
        if not columns:
            return data
        try:
            value = json.loads(data)
        except ValueError:
            return data  # the read-through's own checks call it malformed
        changed = False

        def opened(row: Any) -> Any:
            nonlocal changed
            if not isinstance(row, dict):
                return row
            out = dict(row)
            for column in columns & row.keys():
                text = row[column]
                if not isinstance(text, str) or not text.startswith(PREFIX):
                    raise SealedValueError(f"{key}: column {column} is not sealed")
                out[column] = json.loads(self._open_one(key, column, text))
                changed = True
            return out

        shaped = [opened(r) for r in value] if isinstance(value, list) else opened(value)
        return json.dumps(shaped, separators=(",", ":"), sort_keys=True) if changed else data

    def _open_one(self, key: str, column: str, text: str) -> str:
        key_id, _, encoded = text[len(PREFIX):].partition(":")
        aead = self._aead.get(key_id)
        if aead is None:
            raise SealedValueError(f"{key}: column {column} was sealed with key {key_id!r}, "
                                   f"which is not in {KEYRING_VARIABLE}")
        try:
            blob = base64.b64decode(encoded, validate=True)
            return aead.decrypt(blob[:_NONCE], blob[_NONCE:], _aad(key, column)).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SealedValueError(f"{key}: column {column} does not open with key "
                                   f"{key_id!r} (altered, or sealed for another key)") from None

    def open_fields(self, key: str, fields: dict[str, str] | str) -> dict[str, str] | str:
        """A key's hash with its data opened; an empty hash (a miss) when it does not open."""
        if isinstance(fields, str) or FIELD_DATA not in fields or not self.columns(key):
            return fields
        try:
            return {**fields, FIELD_DATA: self.open(key, fields[FIELD_DATA])}
        except SealedValueError as e:
            log.warning("%s; read as a miss", e)
            return {}


def _aad(key: str, column: str) -> bytes:
    return f"{key}\x00{column}".encode()


def from_settings(settings: Settings, catalog: Catalog) -> FieldCrypto | None:
    """The field crypto the catalog needs: None when no template marks a column sensitive.
    A sensitive column without a keyring is a ``ConfigError``: values are never stored in
    the clear by mistake."""
    if not any(t.sensitive for t in catalog):
        return None
    if settings.keyring is None:
        marked = sorted(t.name for t in catalog if t.sensitive)
        raise ConfigError(f"templates {', '.join(marked)} mark sensitive columns: set "
                          f"{KEYRING_VARIABLE} to a keyring file (id:base64key lines)")
    return FieldCrypto(catalog, Keyring.load(settings.keyring))

