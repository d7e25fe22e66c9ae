"""Bounded retries for errors named as transient: bounded in attempts and in time, with jitter.

``RETRY_BACKOFF=0`` in the environment turns the waits off (tests that count attempts). With
``until``, setting that event ends the retries at once (a process told to stop).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

import tenacity
from redis_spanner.schemas.errors import TransientError

T = TypeVar("T")


def retrying(
    attempts: int,
    seconds: float,
    *,
    on: tuple[type[BaseException], ...] = (TransientError,),
    initial: float = 0.05,
    maximum: float = 2.0,
    until: threading.Event | None = None,
) -> tenacity.Retrying:
    """A ``tenacity.Retrying`` that stops at ``attempts`` or ``seconds``, whichever comes first,
    or as soon as ``until`` is set."""
    if os.environ.get("RETRY_BACKOFF") == "0":
        wait: tenacity.wait.wait_base = tenacity.wait_none()
    else:
        wait = tenacity.wait_random_exponential(multiplier=initial, max=maximum)
    stop = tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(seconds)
    if until is None:
        return tenacity.Retrying(stop=stop, wait=wait, reraise=True,
                                 retry=tenacity.retry_if_exception_type(on))

    def sleep(seconds: float) -> None:  # woken early by the stop signal
        until.wait(seconds)

    return tenacity.Retrying(stop=stop | tenacity.stop_when_event_set(until), wait=wait,
                             sleep=sleep, reraise=True, retry=tenacity.retry_if_exception_type(on))


def call(fn: Callable[[], T], attempts: int, seconds: float, **kwargs: object) -> T:
    return retrying(attempts, seconds, **kwargs)(fn)  # type: ignore[arg-type]
