"""Polling helper for tests that wait on asynchronous pipelines."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


DEFAULT_TIMEOUT = 60.0
"""Generous: conditions are met in a second or two, but a loaded two-core machine may take many
times that. A deadline only bounds how long a failing test takes to say so."""


def wait_until(probe: Callable[[], T | None], timeout: float = DEFAULT_TIMEOUT,
               interval: float = 0.05) -> T:
    """Return the first truthy result of ``probe``; fail with the last one after ``timeout``."""
    deadline = time.monotonic() + timeout
    result = probe()
    while not result and time.monotonic() < deadline:
        time.sleep(interval)
        result = probe()
    if not result:
        raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
    return result
