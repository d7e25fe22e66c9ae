"""Which Spanner failures are worth retrying: one classification for both sides' adapters."""

from __future__ import annotations

from google.api_core import exceptions as gexc
from redis_spanner.schemas.errors import PermanentError, RedisSpannerError, TransientError

_TRANSIENT = (
    gexc.Aborted,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.RetryError,
    # The emulator runs one read-write transaction at a time and fails the others with
    # FailedPrecondition (or "Transaction not found" for one it already dropped).
    gexc.FailedPrecondition,
)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, _TRANSIENT):
        return True
    return isinstance(error, gexc.NotFound) and "Transaction not found" in str(error)


def translate(error: BaseException, what: str = "spanner") -> BaseException:
    """The project's error for an SDK error: transient, permanent, or unchanged if foreign."""
    if isinstance(error, RedisSpannerError):
        return error
    if is_transient(error):
        return TransientError(f"{what}: {type(error).__name__}")
    if isinstance(error, gexc.GoogleAPICallError):
        return PermanentError(f"{what} refused: {type(error).__name__}: {error}")
    return error
