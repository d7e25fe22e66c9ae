"""Named crash points for fault-injection tests.

``REDIS_SPANNER_FAILPOINTS="relay.after_publish=kill"`` makes the process SIGKILL itself when it
reaches that point. Unset (always, in production) a failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = dict(
    item.split("=", 1)
    for item in os.environ.get("REDIS_SPANNER_FAILPOINTS", "").split(",")
    if "=" in item
)


def failpoint(name: str) -> None:
    action = _ACTIVE.get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
