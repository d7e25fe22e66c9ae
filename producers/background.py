"""Calls on daemon threads, as futures: a call waiting on a Spanner or Pub/Sub that stopped
answering never holds up the process's exit (``concurrent.futures`` pools join theirs)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

T = TypeVar("T")


def in_background(call: Callable[[], T], name: str,
                  slots: threading.Semaphore | None = None) -> futures.Future[T]:
    """Start ``call()`` on a daemon thread; with ``slots``, it first waits for one."""
    future: futures.Future[T] = futures.Future()

    def run() -> None:
        if slots is not None:
            slots.acquire()
        try:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as e:
                    future.set_exception(e)
        finally:
            if slots is not None:
                slots.release()

    threading.Thread(target=run, daemon=True, name=name).start()
    return future
