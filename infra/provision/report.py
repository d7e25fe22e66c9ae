"""What provisioning reports: one result per resource and the warnings, and the error a failed
step raises, which names the step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from google.api_core import exceptions, retry
from redis_spanner.schemas.errors import RedisSpannerError

Action = Literal["created", "updated", "unchanged"]
CALL_TIMEOUT_SECONDS = 10.0
# Every admin call gives up within CALL_TIMEOUT_SECONDS, retries included: a wrong address is
# an error within seconds, not minutes. (Long-running operations have their own timeout.)
BOUNDED: dict[str, Any] = {
    "timeout": CALL_TIMEOUT_SECONDS,
    "retry": retry.Retry(initial=0.2, maximum=2.0, multiplier=2.0, timeout=CALL_TIMEOUT_SECONDS,
                         predicate=retry.if_exception_type(
                             exceptions.ServiceUnavailable, exceptions.InternalServerError,
                             exceptions.Unknown, exceptions.Aborted)),
}


class ProvisionError(RedisSpannerError):
    """A resource could not be created or converged; the message says which and why."""


@dataclass(frozen=True)
class ResourceResult:
    kind: str
    name: str
    action: Action
    details: tuple[str, ...] = ()


@dataclass
class ProvisionReport:
    resources: list[ResourceResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def action(self, name: str) -> Action:
        """What happened to the resource with this full name."""
        for result in self.resources:
            if result.name == name:
                return result.action
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def step(what: str) -> Iterator[None]:
    """A failed API call inside becomes a ``ProvisionError`` that says ``what`` failed."""
    try:
        yield
    except exceptions.GoogleAPICallError as e:
        raise ProvisionError(f"{what} failed: {e.code} {e.message}") from e
    except exceptions.RetryError as e:
        raise ProvisionError(f"{what} failed: gave up retrying ({e.cause})") from e
