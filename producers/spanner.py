"""The producers' one touch point with google-cloud-spanner: the database handle and
read-write transactions with bounded retries, and the hook the fast path runs after a commit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from google.cloud import spanner
from redis_spanner.producers.outbox import Recorded, recording
from redis_spanner.schemas.errors import TransientError
from redis_spanner.schemas.retrying import retrying
from redis_spanner.schemas.settings import Settings
from redis_spanner.schemas.spanner_errors import is_transient

T = TypeVar("T")
ABORT_RETRY_DELAY = 0.02


class AfterCommit(Protocol):
    """Runs once a transaction committed, with the events it recorded and its commit
    timestamp (``FastPath``). Must not raise: the transaction has committed."""

    def after_commit(self, events: Sequence[Recorded], committed: Any) -> None: ...


def open_database(settings: Settings) -> Any:
    client = spanner.Client(project=settings.project)
    return client.instance(settings.instance).database(
        settings.database, database_role=settings.spanner_database_role)


def run_transaction(
    database: Any,
    work: Callable[[Any], T],
    *,
    attempts: int = 30,
    seconds: float = 30.0,
    fast_path: AfterCommit | None = None,
) -> tuple[T, Any]:
    """Run ``work(transaction)`` in a read-write transaction, retrying transient failures.

    Returns the work's result and the commit timestamp. ``work`` must be safe to run again:
    each attempt is a new transaction, and only the committed attempt has any effect.
    With ``fast_path``, the events the committed attempt recorded are handed to it right after
    the commit returns, before this call does.
    """
    recorded: list[Recorded] = []

    def attempt() -> tuple[T, Any]:
        holder: list[Any] = []

        def wrapped(transaction: Any) -> T:
            holder[:] = [transaction]
            recorded.clear()
            if fast_path is None:
                return work(transaction)
            with recording() as events:
                result = work(transaction)
            recorded[:] = events
            return result

        try:
            # Without server retry info the client sleeps 2**n seconds between aborted
            # attempts (the emulator gives none); retry sooner, within this call's budget.
            result = database.run_in_transaction(
                wrapped, timeout_secs=seconds, default_retry_delay=ABORT_RETRY_DELAY
            )
        except Exception as e:
            if is_transient(e):
                raise TransientError(f"spanner transaction failed: {type(e).__name__}") from e
            raise
        return result, holder[0].committed

    result, committed = retrying(attempts, seconds, initial=0.01, maximum=0.5)(attempt)
    if fast_path is not None:
        fast_path.after_commit(recorded, committed)
    return result, committed
