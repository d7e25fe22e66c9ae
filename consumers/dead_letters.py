"""What a dead letter says: the event it carries (or why it does not decode), and its story.

A dead letter tells its story in ``dl_*`` attributes (``consumers.pubsub.DeadLetterPublisher``).
One that Pub/Sub forwarded by itself after max_delivery_attempts has only its original
attributes and Pub/Sub's ``CloudPubSubDeadLetter*`` ones: its reason is
``delivery-attempts-exceeded``. ``Filter`` says which dead letters a tool acts on.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis_spanner.consumers.messages import Inbound
from redis_spanner.consumers.pubsub import (
    DEAD_LETTER_PREFIX,
    FORWARDED_DELIVERY_COUNT,
    FORWARDED_PUBLISH_TIME,
)
from redis_spanner.schemas.envelope import Event, decode
from redis_spanner.schemas.errors import PermanentError

FORWARDED_REASON = "delivery-attempts-exceeded"
REPLAY_COUNT = "replay_count"
HEAL_ATTEMPTS = "heal_attempts"
"""Heal attempts a letter failed on its own (``redis_spanner.consumers.heal``)."""
_SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    data: bytes
    attributes: Mapping[str, str]
    published: float | None
    """When it reached the dead-letter topic (seconds since the epoch)."""
    event: Event | None
    problem: PermanentError | None
    """Why ``data`` is not a valid envelope; ``None`` when ``event`` decoded."""
    body: Mapping[str, Any] | None = None
    """``data`` as a JSON object, when it is one, even if not a valid envelope: where a
    letter without attributes names its event."""

    @classmethod
    def of(cls, message: Inbound) -> DeadLetter:
        try:
            event, problem = decode(message.data), None
        except PermanentError as e:
            event, problem = None, e
        return cls(message.message_id, message.data, dict(message.attributes),
                   message.publish_time, event, problem,
                   None if event else json_object(message.data))

    def _named(self, attribute: str, field: str) -> str | None:
        """An attribute, else the same field of a body that is JSON at least."""
        if value := self.attributes.get(attribute):
            return value
        found = self.body.get(field) if self.body else None
        return found[:256] if isinstance(found, str) and found else None

    def _dl(self, name: str) -> str | None:
        return self.attributes.get(DEAD_LETTER_PREFIX + name)

    @property
    def forwarded(self) -> bool:
        """Pub/Sub forwarded it after max_delivery_attempts; the consumer told no story."""
        return self._dl("reason") is None

    @property
    def reason(self) -> str:
        return self._dl("reason") or FORWARDED_REASON

    @property
    def event_id(self) -> str | None:
        if self.event:
            return self.attributes.get("event_id") or self.event.event_id
        return self._named("event_id", "event_id")

    @property
    def event_type(self) -> str | None:
        if self.event:
            return self.attributes.get("event_type") or str(self.event.type)
        return self._named("event_type", "type")

    @property
    def table(self) -> str | None:
        if self.event:
            return self.attributes.get("table") or self.event.table
        return self._named("table", "table")

    @property
    def key(self) -> list[Any] | None:
        """The primary key parts, from the envelope, or from a body that is JSON at least."""
        if self.event:
            return list(self.event.key)
        key = self.body.get("key") if self.body else None
        return key if isinstance(key, list) else None

    @property
    def attempts(self) -> int | None:
        raw = self._dl("delivery_attempts") or self.attributes.get(FORWARDED_DELIVERY_COUNT)
        return int(raw) if raw and raw.isascii() and raw.isdigit() else None

    @property
    def error(self) -> str:
        if self.forwarded:
            return f"Pub/Sub forwarded it after {self.attempts or '?'} delivery attempts"
        return self._dl("error") or ""

    @property
    def first_failure_time(self) -> str | None:
        return self._dl("first_failure_time") or self.attributes.get(FORWARDED_PUBLISH_TIME)

    @property
    def source_subscription(self) -> str | None:
        return self._dl("source_subscription") or self.attributes.get(_SOURCE_SUBSCRIPTION)

    @property
    def replay_count(self) -> int:
        """How many times this event was replayed before it came back here."""
        raw = self.attributes.get(REPLAY_COUNT, "")
        return int(raw) if raw.isascii() and raw.isdigit() else 0

    def age(self, now: float) -> float | None:
        return None if self.published is None else max(now - self.published, 0.0)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "table": self.table,
            "key": self.key,
            "reason": self.reason,
            "forwarded_by_pubsub": self.forwarded,
            "error_class": self._dl("error_class"),
            "error": self.error,
            "attempts": self.attempts,
            "first_failure_time": self.first_failure_time,
            "source_subscription": self.source_subscription,
            "dead_lettered_at": _iso(self.published),
            "age_seconds": _rounded(self.age(now)),
            "replay_count": self.replay_count,
            "decode_error": None if self.problem is None else why(self.problem),
        }


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters a tool acts on; an empty set matches everything."""

    reasons: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    """Dead-letter message ids or event ids."""

    @property
    def explicit(self) -> bool:
        """Names dead letters by reason or id: enough to replay one that would fail again."""
        return bool(self.reasons or self.ids)

    def __call__(self, letter: DeadLetter) -> bool:
        return (
            (not self.reasons or letter.reason in self.reasons)
            and (not self.types or letter.event_type in self.types)
            and (not self.ids or bool({letter.message_id, letter.event_id} & self.ids))
        )


def json_object(data: bytes) -> Mapping[str, Any] | None:
    """``data`` as a JSON object; None when it is not one (or nests too deep to parse)."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def render_data(data: bytes) -> tuple[str, str]:
    """A payload shown safely: ``("json", pretty)``, ``("text", repr)`` or ``("base64", …)``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(data).decode()
    try:
        return "json", json.dumps(json.loads(text), indent=2, sort_keys=True)
    except (ValueError, RecursionError):
        return "text", repr(text)


def why(error: Exception) -> str:
    """An error as a person reads it: its class and its message."""
    return f"{type(error).__name__}: {error}"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")
