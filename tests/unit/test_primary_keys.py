"""Key sets of primary keys (rewarm reads, outbox deletes) go to Spanner as the very message
the client would build."""

from __future__ import annotations

from google.cloud import spanner
from hypothesis import given
from hypothesis import strategies as st
from redis_spanner.schemas.events import INT64_MAX, INT64_MIN
from redis_spanner.schemas.spanner_keys import PrimaryKeys

parts = st.one_of(st.integers(INT64_MIN, INT64_MAX), st.text(min_size=1, max_size=128))
keys = st.lists(st.lists(parts, min_size=1, max_size=4), max_size=20)


@given(keys)
def test_primary_keys_encode_as_the_clients_own_key_set(key_list: list[list[object]]) -> None:
    ours = PrimaryKeys(keys=key_list)._to_pb()
    theirs = spanner.KeySet(keys=key_list)._to_pb()
    assert type(ours).pb(ours).SerializeToString(deterministic=True) == \
        type(theirs).pb(theirs).SerializeToString(deterministic=True)

