"""Key sets of primary keys, for both sides' Spanner reads and deletes."""

from __future__ import annotations

from google.cloud import spanner
from google.cloud.spanner_v1.types import KeySet as KeySetProto

_KEY_SET_PB = KeySetProto.pb()


class PrimaryKeys(spanner.KeySet):
    """Primary keys whose parts are STRING or INT64, built straight into their protobuf.

    The client's own ``KeySet`` converts every part through proto-plus, about nine times the
    cost of this for a batch of keys: the largest part of a rewarm's CPU, and a large one of
    the relay's deletes. The message is the same. Should the client stop calling ``_to_pb``,
    its own conversion runs instead."""

    def _to_pb(self) -> KeySetProto:
        raw = _KEY_SET_PB()
        add = raw.keys.add
        for key in self.keys:
            values = add().values
            for part in key:
                values.add(string_value=str(part))  # INT64 travels as its decimal text
        wrapped: KeySetProto = KeySetProto.wrap(raw)
        return wrapped
