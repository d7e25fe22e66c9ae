"""One audit line per decided event on the ``redis_spanner.audit`` logger: event id, table,
key, version and outcome (changed, superseded, dead_lettered, nack).

The logger is separate so a deployment can route it to a sink of its own (a handler on
``redis_spanner.audit`` with ``propagate = False``), or silence it (level WARNING), without
touching the other logs. The line is JSON, so key parts from a message cannot forge a line.
When the logger is off for INFO this costs one level check per batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from redis_spanner.consumers.messages import Outcome

log = logging.getLogger("redis_spanner.audit")


def record(outcomes: Sequence[Outcome]) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    for outcome in outcomes:
        entry = describe(outcome)
        log.info("%s", json.dumps(entry, default=str, ensure_ascii=True), extra={"audit": entry})


def describe(outcome: Outcome) -> dict[str, object]:
    event = outcome.event
    if outcome.dead_letter_reason:
        result = "dead_lettered"
    elif event is None or outcome.disposition != "ack":
        result = str(outcome.disposition)
    else:
        result = "changed" if outcome.changed else "superseded"
    entry: dict[str, object] = {"message_id": outcome.message.message_id, "outcome": result}
    if event is not None:
        entry.update(event_id=event.event_id, table=event.table, key=list(event.key),
                     version=event.version)
    if outcome.dead_letter_reason:
        entry["reason"] = outcome.dead_letter_reason
    return entry
