"""One error tree for the whole pipeline.

Adapters translate SDK exceptions into these; the consumer's ack policy decides on the class
alone, never on the SDK exception underneath.
"""

from __future__ import annotations


class RedisSpannerError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(RedisSpannerError):
    """A setting or an option is missing or invalid: fix it and run again; retrying can't help.
    The message names the setting, never a secret's value. Not a ``PermanentError``: a message is
    never dead-lettered for the consumer's own configuration."""

    reason = "config"


class CatalogError(ConfigError):
    """The key catalog cannot be loaded, or does not match the live Spanner schema: a
    configuration mistake, reported at start (never a dead letter at run time)."""


class PermanentError(RedisSpannerError):
    """Retrying cannot help: the message goes to the dead-letter topic at once."""

    reason = "permanent"


class DecodeError(PermanentError):
    """The payload is not a valid envelope. Keeps the raw bytes for the dead letter."""

    reason = "undecodable"

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw


class ValidationError(PermanentError):
    """The envelope decoded but a field breaks the contract."""

    reason = "invalid"


class VersionAhead(ValidationError):
    """The commit timestamp lies further ahead of this clock than the allowed skew: honouring
    it would refuse every genuine write to its keys until real time caught up."""

    reason = "version-ahead"


class UncacheableValue(PermanentError):
    """Spanner holds a value the cache encoding has no form for (an unsupported type)."""

    reason = "uncacheable-value"


class UnknownEventType(PermanentError):
    reason = "unknown-type"


class UnsupportedSchemaVersion(PermanentError):
    reason = "unsupported-schema-version"


class KeyRefused(PermanentError):
    """A primary key part or table would address a key outside the declared namespace."""

    reason = "key-refused"


class EventTooLarge(PermanentError):
    reason = "too-large"


class RetriesExhausted(PermanentError):
    """A transient failure outlasted every delivery attempt: dead-letter it with its cause."""

    reason = "retries-exhausted"


class HealExhausted(RetriesExhausted):
    """A forwarded letter failed every heal attempt while Redis took writes beside its keys:
    its failure is its own, however transient it looks."""

    reason = "heal-exhausted"


class CheckpointExpired(PermanentError):
    """A change-stream checkpoint lies beyond the stream's retention: the changes since are
    gone from Spanner, so reading on would silently skip them."""

    reason = "checkpoint-expired"


class TransientError(RedisSpannerError):
    """Redis or Spanner unavailable, a timeout, an aborted transaction: retry, then nack."""

    reason = "transient"
