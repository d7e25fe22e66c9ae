"""Named fault points for fault-injection tests.

``REDIS_SPANNER_FAILPOINTS="relay.after_publish=kill"`` makes the process SIGKILL itself when it
reaches that point; ``=raise`` raises ``FailpointError`` there instead, ``=raise@3`` lets the
first 3 passes through and raises from the 4th on, and ``=raise*3`` raises the first 3 times
only. Unset (always, in production) a failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_ACTIVE = dict(
    item.split("=", 1)
    for item in os.environ.get("REDIS_SPANNER_FAILPOINTS", "").split(",")
    if "=" in item
)
_PASSES: Counter[str] = Counter()


class FailpointError(RuntimeError):
    """Raised at a failpoint set to ``raise``: an error no code path expects."""


def failpoint(name: str) -> None:
    action = _ACTIVE.get(name)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("raise"):
        _PASSES[name] += 1
        passes = _PASSES[name]
        if action.startswith("raise*"):
            failing = passes <= int(action[len("raise*"):])
        else:
            failing = passes > int(action.partition("@")[2] or 0)
        if failing:
            raise FailpointError(f"failpoint {name} ({passes})")
