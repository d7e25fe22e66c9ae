"""Typed settings, read from the environment once (Cloud Run is configured by env)."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis_spanner.schemas.cache import DEFAULT_CACHE_TTL_SECONDS, DEFAULT_TOMBSTONE_TTL_SECONDS
from redis_spanner.schemas.errors import CatalogError, ConfigError
from redis_spanner.schemas.versions import DEFAULT_MAX_SKEW_SECONDS

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
"""Google's public certificates for the ID tokens Pub/Sub attaches to pushes."""

if TYPE_CHECKING:
    from redis_spanner.schemas.keys import Catalog

ENV_PREFIX = "REDIS_SPANNER_"


class Settings(BaseSettings):
    """Every setting of the pipeline. Names map to ``REDIS_SPANNER_<NAME>`` unless aliased."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore",
                                      # a rejected REDIS_URL may carry a password
                                      hide_input_in_errors=True)

    project: str = Field("redis-spanner-local", validation_alias="GOOGLE_CLOUD_PROJECT")
    instance: str = "redis-spanner"
    database: str = "cache"
    topic: str = "cache-events"
    subscription: str = "cache-events-consumer"
    dead_letter_topic: str = "cache-events-dead-letter"
    dead_letter_subscription: str = "cache-events-dead-letter-hold"
    heal_topic: str | None = None
    """Where Pub/Sub forwards what was never applied; ``<topic>-heal`` when unset."""
    heal_subscription: str | None = None
    """The worker's subscription on the heal topic; ``<subscription>-heal`` when unset."""
    redis_url: SecretStr | None = Field(None, validation_alias="REDIS_URL")
    pubsub_emulator_host: str | None = Field(None, validation_alias="PUBSUB_EMULATOR_HOST")
    spanner_emulator_host: str | None = Field(None, validation_alias="SPANNER_EMULATOR_HOST")

    declaration: str | None = None
    """Path of a pipeline.json of one's own (``provision``); unset: the packaged one."""
    ddl: str | None = None
    """Path of a service's own DDL file that ``provision`` applies after the outbox tables."""

    namespace: str = "rsc"
    catalog: str = "redis_spanner.schemas.catalog:DEMO"
    cache_ttl_seconds: int = Field(DEFAULT_CACHE_TTL_SECONDS, gt=0)
    tombstone_ttl_seconds: int = Field(DEFAULT_TOMBSTONE_TTL_SECONDS, gt=0)
    max_version_skew_seconds: float = Field(DEFAULT_MAX_SKEW_SECONDS, gt=0)
    """Events further ahead of the clock are refused; cache entries further ahead are foreign."""
    redis_timeout_seconds: float = Field(2.0, gt=0)
    redis_cluster: bool = False
    redis_ca_file: Path | None = None
    redis_cert_file: Path | None = None
    redis_key_file: Path | None = None
    redis_username: str | None = None
    redis_password_file: Path | None = None
    redis_wait_replicas: int = Field(0, ge=0, le=64)
    """After a batch's writes, wait for this many replicas to have them (0: don't wait); on a
    cluster, this many replicas of every primary the batch wrote to."""
    redis_wait_timeout_ms: int = Field(500, gt=0)

    relay_poll_ms: int = Field(20, gt=0)
    relay_batch: int = Field(2000, gt=0, le=5000)
    relay_lease_seconds: float = Field(10.0, gt=1)

    # Where events come from: the outbox (`relay`) or a change stream (`changestream-relay`).
    source: Literal["outbox", "changestream"] = "outbox"
    change_stream: str = Field("CacheChanges", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,127}$")

    worker_streams: int = Field(4, gt=0, le=64)
    worker_batch: int = Field(1000, gt=0, le=1000)
    retry_attempts: int = Field(4, gt=0)
    retry_seconds: float = Field(5.0, gt=0)
    max_delivery_attempts: int = Field(5, ge=5, le=100)
    heal_max_attempts: int = Field(10, ge=0, le=1000)
    """Heal attempts a letter may fail while Redis takes writes beside its keys before it goes
    to the dead-letter hold as ``heal-exhausted`` (0: heal until the letter's retention ends)."""
    stop_seconds: float = Field(7.0, gt=0, le=60)
    """After SIGTERM, how long a worker or server may finish in-flight work before it exits."""

    # Fine-grained access control: the Spanner database role the process acts as (none: the
    # role its IAM grants give it).
    spanner_database_role: str | None = None

    # The push endpoint (`serve`) verifies Pub/Sub's OIDC token unless this is off, which is
    # only allowed against the emulators.
    push_auth: bool = True
    push_audience: str | None = None
    push_service_account: str | None = None
    push_certs_url: str = GOOGLE_CERTS_URL

    # Field encryption: a file of `id:base64key` lines, the first the primary; needed when a
    # key template marks columns sensitive (redis_spanner.consumers.field_crypto).
    keyring: Path | None = None

    # Where operator actions (dlq replay and purge, verify --repair, rewarm, provision) are
    # recorded: the AuditLog table in Spanner, or only the `redis_spanner.audit` log line.
    audit_sink: Literal["spanner", "log"] = "spanner"

    # The pull worker's health endpoint (`worker`): Cloud Run sets PORT; 0 turns it off.
    health_port: int = Field(0, ge=0, le=65535, validation_alias="PORT")

    @field_validator("instance", "database", "topic", "subscription", "dead_letter_topic",
                     "dead_letter_subscription", "heal_topic", "heal_subscription")
    @classmethod
    def _resource_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9._~%+-]{2,249}", value):
            raise ValueError("resource ids need 3-250 characters and start with a letter")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        from redis_spanner.schemas.keys import Catalog

        Catalog(value, ())  # refuses a namespace keys can't start with
        return value

    @field_validator("catalog")
    @classmethod
    def _catalog(cls, value: str) -> str:
        if value.endswith(".toml") or os.path.exists(value):
            return value  # a catalog file, read and checked by load_catalog
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError("must be a catalog file (.toml) or 'package.module:NAME'")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"(rediss?|unix)://", value.get_secret_value()):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _wait_within_socket_timeout(self) -> Settings:
        if self.redis_wait_replicas and (
            self.redis_wait_timeout_ms >= self.redis_timeout_seconds * 1000
        ):
            raise ValueError(
                "REDIS_SPANNER_REDIS_WAIT_TIMEOUT_MS must be below "
                "REDIS_SPANNER_REDIS_TIMEOUT_SECONDS, or the socket times out first"
            )
        return self

    @property
    def emulated(self) -> bool:
        return bool(self.pubsub_emulator_host or self.spanner_emulator_host)

    @property
    def fully_emulated(self) -> bool:
        """Both Pub/Sub and Spanner are emulators: nothing here can reach a real project."""
        return bool(self.pubsub_emulator_host and self.spanner_emulator_host)

    def require_redis_url(self) -> str:
        if self.redis_url is None:
            raise ConfigError(
                "REDIS_URL is not set: export it, or run "
                "'eval \"$(redis-spanner dev env)\"' after 'redis-spanner dev up'"
            )
        return self.redis_url.get_secret_value()

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.topic}"

    @property
    def subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.subscription}"

    @property
    def dead_letter_topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.dead_letter_topic}"

    @property
    def dead_letter_subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.dead_letter_subscription}"

    @property
    def heal_topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.heal_topic or self.topic + '-heal'}"

    @property
    def heal_subscription_path(self) -> str:
        name = self.heal_subscription or self.subscription + "-heal"
        return f"projects/{self.project}/subscriptions/{name}"


def redacted_url(url: str) -> str:
    """A Redis URL with any password replaced, safe for logs."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


def _field(loc: str) -> str:
    """The setting pydantic's error location names: a field, or an alias of one."""
    for name, info in Settings.model_fields.items():
        if loc in (name, info.validation_alias):
            return name
    return loc


def variable(field: str) -> str:
    """The environment variable a setting is read from."""
    info = Settings.model_fields.get(field)
    if info is None:
        return field
    return info.validation_alias if isinstance(info.validation_alias, str) \
        else ENV_PREFIX + field.upper()


def explain(error: ValidationError) -> str:
    """Invalid settings as one line naming each variable, its value (never a secret's) and
    what is wrong with it."""
    problems = []
    for detail in error.errors():
        message = str(detail["msg"]).removeprefix("Value error, ")
        if not detail["loc"]:  # a rule across settings: its message names them, no value shown
            problems.append(message)
            continue
        field = _field(str(detail["loc"][0]))
        name = variable(field)
        info = Settings.model_fields.get(field)
        secret = info is not None and "SecretStr" in str(info.annotation)
        value = detail.get("input", os.environ.get(name, ""))
        shown = "" if secret or isinstance(value, dict) else f"={str(value)[:60]!r}"
        problems.append(f"{name}{shown}: {message}")
    return "invalid setting " + "; ".join(problems)


def require_catalog(settings: Settings) -> Catalog:
    """The key templates the settings name; a ``ConfigError`` naming the variable when they
    can't be loaded."""
    from redis_spanner.schemas.catalog import load_catalog

    try:
        return load_catalog(settings.catalog, settings.namespace)
    except CatalogError as e:
        raise CatalogError(f"REDIS_SPANNER_CATALOG: {e}") from None
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        raise ConfigError(f"REDIS_SPANNER_CATALOG={settings.catalog!r} is not a catalog of key "
                          f"templates: {type(e).__name__}: {e}") from None


def load_settings() -> Settings:
    """Settings from the environment; a ``ConfigError`` naming each invalid variable."""
    try:
        return Settings()
    except ValidationError as e:
        raise ConfigError(explain(e)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
