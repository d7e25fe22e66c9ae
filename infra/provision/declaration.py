"""The pipeline's resource policies, loaded from infra/pipeline.json into frozen dataclasses.

pipeline.json is the one declaration: `redis-spanner provision` and infra/terraform both read
it. Resource names are not in it; they come from `Settings` (the environment), so one
declaration serves the emulators, a test run with unique names, and every GCP project.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from redis_spanner.schemas.errors import ConfigError

DEFAULT_PATH = Path(__file__).parent.parent / "pipeline.json"

# Limits of the Pub/Sub and Spanner APIs, checked here so a bad value fails before any call.
MAX_SUBSCRIPTION_RETENTION_SECONDS = 7 * 24 * 3600
MAX_TOPIC_RETENTION_SECONDS = 31 * 24 * 3600
MIN_RETENTION_SECONDS = 600


class DeclarationError(ConfigError):
    """pipeline.json is missing a value, has an unknown one, or breaks a limit."""


@dataclass(frozen=True)
class TopicPolicy:
    message_retention_seconds: int


@dataclass(frozen=True)
class SubscriptionPolicy:
    """The consumer subscription: redelivery with backoff, then the dead-letter topic."""

    ack_deadline_seconds: int
    max_delivery_attempts: int
    retry_minimum_backoff_seconds: int
    retry_maximum_backoff_seconds: int
    message_retention_seconds: int
    enable_message_ordering: bool = False


@dataclass(frozen=True)
class HoldSubscriptionPolicy:
    """The subscription on the dead-letter topic that keeps dead letters for a person."""

    ack_deadline_seconds: int
    message_retention_seconds: int


@dataclass(frozen=True)
class SpannerPolicy:
    emulator_instance_config: str
    instance_config: str
    processing_units: int
    ddl_file: str


@dataclass(frozen=True)
class Declaration:
    topic: TopicPolicy
    subscription: SubscriptionPolicy
    dead_letter_topic: TopicPolicy
    dead_letter_subscription: HoldSubscriptionPolicy
    spanner: SpannerPolicy
    base_dir: Path = DEFAULT_PATH.parent

    @property
    def ddl_path(self) -> Path:
        return self.base_dir / self.spanner.ddl_file


def load_declaration(path: Path | str | None = None) -> Declaration:
    """Read and validate pipeline.json (the packaged one unless a path is given)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DeclarationError(f"cannot read the declaration {path}: {e}") from e
    return parse_declaration(data, base_dir=path.parent)


def parse_declaration(data: Any, base_dir: Path = DEFAULT_PATH.parent) -> Declaration:
    """Build a `Declaration` from decoded JSON; raise `DeclarationError` naming the bad key."""
    root = _section(data, "the declaration")
    _refuse_unknown(root, {"topic", "subscription", "dead_letter_topic",
                           "dead_letter_subscription", "spanner"}, "the declaration")
    declaration = Declaration(
        topic=_build(TopicPolicy, root, "topic"),
        subscription=_build(SubscriptionPolicy, root, "subscription"),
        dead_letter_topic=_build(TopicPolicy, root, "dead_letter_topic"),
        dead_letter_subscription=_build(HoldSubscriptionPolicy, root, "dead_letter_subscription"),
        spanner=_build(SpannerPolicy, root, "spanner"),
        base_dir=base_dir,
    )
    validate(declaration)
    return declaration


def validate(declaration: Declaration) -> None:
    """Check every value against the API limits and the pipeline's own rules."""
    sub = declaration.subscription
    if sub.enable_message_ordering:
        raise DeclarationError(
            "subscription.enable_message_ordering must be false: the consumer orders events by "
            "their versions, and the Pub/Sub emulator fails pulls on a subscription with both "
            "ordering and a dead-letter policy"
        )
    _within("subscription.max_delivery_attempts", sub.max_delivery_attempts, 5, 100)
    for name, policy in (("subscription", sub), ("dead_letter_subscription",
                                                 declaration.dead_letter_subscription)):
        _within(f"{name}.ack_deadline_seconds", policy.ack_deadline_seconds, 10, 600)
        _within(f"{name}.message_retention_seconds", policy.message_retention_seconds,
                MIN_RETENTION_SECONDS, MAX_SUBSCRIPTION_RETENTION_SECONDS)
    _within("subscription.retry_minimum_backoff_seconds", sub.retry_minimum_backoff_seconds,
            0, 600)
    _within("subscription.retry_maximum_backoff_seconds", sub.retry_maximum_backoff_seconds,
            sub.retry_minimum_backoff_seconds, 600)
    for name, topic in (("topic", declaration.topic),
                        ("dead_letter_topic", declaration.dead_letter_topic)):
        _within(f"{name}.message_retention_seconds", topic.message_retention_seconds,
                MIN_RETENTION_SECONDS, MAX_TOPIC_RETENTION_SECONDS)
    units = declaration.spanner.processing_units
    if not (units >= 100 and (units % 1000 == 0 or (units < 1000 and units % 100 == 0))):
        raise DeclarationError(
            f"spanner.processing_units is {units}: use a multiple of 100 below 1000, "
            "or a multiple of 1000"
        )
    if not declaration.ddl_path.is_file():
        raise DeclarationError(f"spanner.ddl_file: {declaration.ddl_path} does not exist")


_T = TypeVar("_T")


def _section(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DeclarationError(f"{where} must be a JSON object")
    # Keys starting with "_" are comments (JSON has none of its own).
    return {k: v for k, v in value.items() if not str(k).startswith("_")}


def _refuse_unknown(section: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(section) - known)
    if unknown:
        raise DeclarationError(f"unknown key(s) in {where}: {', '.join(unknown)}")


def _build(cls: type[_T], root: Mapping[str, Any], key: str) -> _T:
    if key not in root:
        raise DeclarationError(f"the declaration has no '{key}' section")
    section = _section(root[key], key)
    specs = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    _refuse_unknown(section, set(specs), key)
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if name not in section:
            if spec.default is MISSING:
                raise DeclarationError(f"{key}.{name} is missing")
            continue
        value = section[name]
        expected = {"int": int, "bool": bool, "str": str}[str(spec.type)]
        # bool is an int in Python; refuse `true` where a number is meant, and the reverse.
        if type(value) is not expected:
            raise DeclarationError(
                f"{key}.{name} must be a JSON {expected.__name__}, not {value!r}"
            )
        values[name] = value
    return cls(**values)


def _within(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise DeclarationError(f"{name} is {value}: it must be between {low} and {high}")
