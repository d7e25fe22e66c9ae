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
    on_retry: Callable[[BaseException], None] | None = None,
) -> tenacity.Retrying:
    """A ``tenacity.Retrying`` that stops at ``attempts`` or ``seconds``, whichever comes first,
    or as soon as ``until`` is set. ``on_retry`` is told each error that is retried."""
    if os.environ.get("RETRY_BACKOFF") == "0":
        wait: tenacity.wait.wait_base = tenacity.wait_none()
    else:
        wait = tenacity.wait_random_exponential(multiplier=initial, max=maximum)
    stop = tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(seconds)
    before_sleep = None if on_retry is None else _told(on_retry)
    if until is None:
        return tenacity.Retrying(stop=stop, wait=wait, reraise=True, before_sleep=before_sleep,
                                 retry=tenacity.retry_if_exception_type(on))

    def sleep(seconds: float) -> None:  # woken early by the stop signal
        until.wait(seconds)

    return tenacity.Retrying(stop=stop | tenacity.stop_when_event_set(until), wait=wait,
                             sleep=sleep, reraise=True, before_sleep=before_sleep,
                             retry=tenacity.retry_if_exception_type(on))


def _told(on_retry: Callable[[BaseException], None]) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if error is not None:
            on_retry(error)

    return before_sleep


def call(fn: Callable[[], T], attempts: int, seconds: float, **kwargs: object) -> T:
    return retrying(attempts, seconds, **kwargs)(fn)  # type: ignore[arg-type]
