"""The interpreter set-up of long-running commands."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from redis_spanner.infra.cli.runtime import THRESHOLDS, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_settle_heap_freezes_what_start_up_left_and_spaces_collections_out() -> None:
    """What exists when the loops start is moved out of the collector's reach, and young
    collections wait for THRESHOLDS[0] allocations instead of the interpreter's 700."""
    survivor = [object()]
    gc.unfreeze()
    settle_heap()
    assert gc.get_freeze_count() > 1000
    assert gc.get_threshold() == THRESHOLDS
    assert not any(o is survivor for o in gc.get_objects())  # frozen, no longer tracked
