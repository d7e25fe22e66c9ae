"""What the transports hand to the core, and what the core hands back. No SDK types here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import RedisSpannerError


@dataclass(frozen=True, slots=True)
class Inbound:
    """One delivered message, whichever transport (pull or push) brought it."""

    message_id: str
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    delivery_attempt: int = 0
    """1 on the first delivery when the subscription has a dead-letter policy, else 0."""
    publish_time: float | None = None
    """When Pub/Sub accepted the message (seconds since the epoch), if the transport knows."""


class Disposition(StrEnum):
    ACK = "ack"
    NACK = "nack"


@dataclass(frozen=True, slots=True)
class Outcome:
    message: Inbound
    disposition: Disposition
    event: Event | None = None
    changed: bool = False
    """True when at least one of the event's keys was written; False when superseded."""
    dead_letter_reason: str | None = None
    error: RedisSpannerError | None = None


class BatchProcessor(Protocol):
    """What a transport feeds: the core's ``Processor``, or anything standing in front of it."""

    def process(self, batch: Sequence[Inbound]) -> list[Outcome]: ...
