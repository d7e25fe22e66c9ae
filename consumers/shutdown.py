"""Bounded shutdown for the long-running consumers (``worker``, ``serve``).

SIGTERM or SIGINT sets a stop event that every loop and every retry watches, so in-flight work
ends quickly and what was not applied is nacked. The work runs in a thread of its own, while
the main thread only waits: a signal is handled at once even when start-up or a call is stuck
in a network client. If the work has not ended ``grace`` seconds after the signal, the process
exits anyway. That loses nothing: a message is acked only after Redis applied it, and Pub/Sub
redelivers every message that was not.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The work did not end within the grace period after the stop signal."""


def run_until_stopped(work: Callable[[threading.Event], None], *, grace: float) -> None:
    """Run ``work(stop)`` until it returns; SIGTERM and SIGINT set ``stop``.

    Raises whatever ``work`` raised, or ``Stopped`` when it outlives the signal by ``grace``
    seconds (the caller should then exit without waiting for anything, see ``exit_now``).
    """
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work(stop)
        except BaseException as e:  # handed to the main thread, which decides
            failure.append(e)

    def on_signal(signum: int, _: Any) -> None:
        log.info("%s: stopping (at most %gs)", signal.Signals(signum).name, grace)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=target, name="main-work", daemon=True)
    thread.start()
    try:
        while thread.is_alive() and not stop.is_set():
            stop.wait(0.5)
        thread.join(grace if stop.is_set() else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if thread.is_alive():
        raise Stopped(f"still busy {grace:g}s after the stop signal; unacked messages will be "
                      "redelivered")
    if failure:
        raise failure[0]


def exit_now(code: int) -> None:
    """Exit without joining threads or running finalizers (a stuck client would hold them)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
