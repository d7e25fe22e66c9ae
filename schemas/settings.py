"""Typed settings, read from the environment once (Cloud Run is configured by env)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis_spanner.schemas.cache import DEFAULT_CACHE_TTL_SECONDS, DEFAULT_TOMBSTONE_TTL_SECONDS
from redis_spanner.schemas.versions import DEFAULT_MAX_SKEW_SECONDS

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
"""Google's public certificates for the ID tokens Pub/Sub attaches to pushes."""


class Settings(BaseSettings):
    """Every setting of the pipeline. Names map to ``REDIS_SPANNER_<NAME>`` unless aliased."""

    model_config = SettingsConfigDict(env_prefix="REDIS_SPANNER_", extra="ignore")

    project: str = Field("redis-spanner-local", validation_alias="GOOGLE_CLOUD_PROJECT")
    instance: str = "redis-spanner"
    database: str = "cache"
    topic: str = "cache-events"
    subscription: str = "cache-events-consumer"
    dead_letter_topic: str = "cache-events-dead-letter"
    dead_letter_subscription: str = "cache-events-dead-letter-hold"
    redis_url: SecretStr | None = Field(None, validation_alias="REDIS_URL")
    pubsub_emulator_host: str | None = Field(None, validation_alias="PUBSUB_EMULATOR_HOST")
    spanner_emulator_host: str | None = Field(None, validation_alias="SPANNER_EMULATOR_HOST")

    namespace: str = "rsc"
    catalog: str = "redis_spanner.schemas.catalog:DEMO"
    cache_ttl_seconds: int = Field(DEFAULT_CACHE_TTL_SECONDS, gt=0)
    tombstone_ttl_seconds: int = Field(DEFAULT_TOMBSTONE_TTL_SECONDS, gt=0)
    max_version_skew_seconds: float = Field(DEFAULT_MAX_SKEW_SECONDS, gt=0)
    """Events further ahead of the clock are refused; cache entries further ahead are foreign."""
    redis_timeout_seconds: float = Field(2.0, gt=0)

    relay_poll_ms: int = Field(50, gt=0)
    relay_batch: int = Field(500, gt=0, le=5000)
    relay_lease_seconds: float = Field(10.0, gt=1)

    # Where events come from: the outbox (`relay`) or a change stream (`changestream-relay`).
    source: Literal["outbox", "changestream"] = "outbox"
    change_stream: str = Field("CacheChanges", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,127}$")

    worker_streams: int = Field(2, gt=0, le=64)
    worker_batch: int = Field(500, gt=0, le=1000)
    retry_attempts: int = Field(4, gt=0)
    retry_seconds: float = Field(5.0, gt=0)
    max_delivery_attempts: int = Field(5, ge=5, le=100)

    # Fine-grained access control: the Spanner database role the process acts as (none: the
    # role its IAM grants give it).
    spanner_database_role: str | None = None

    # The push endpoint (`serve`) verifies Pub/Sub's OIDC token unless this is off, which is
    # only allowed against the emulators.
    push_auth: bool = True
    push_audience: str | None = None
    push_service_account: str | None = None
    push_certs_url: str = GOOGLE_CERTS_URL

    # The pull worker's health endpoint (`worker`): Cloud Run sets PORT; 0 turns it off.
    health_port: int = Field(0, ge=0, le=65535, validation_alias="PORT")

    @field_validator("instance", "database", "topic", "subscription", "dead_letter_topic",
                     "dead_letter_subscription")
    @classmethod
    def _resource_id(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9._~%+-]{2,254}", value):
            raise ValueError("resource ids need 3-255 characters and start with a letter")
        return value

    @property
    def emulated(self) -> bool:
        return bool(self.pubsub_emulator_host or self.spanner_emulator_host)

    @property
    def fully_emulated(self) -> bool:
        """Both Pub/Sub and Spanner are emulators: nothing here can reach a real project."""
        return bool(self.pubsub_emulator_host and self.spanner_emulator_host)

    def require_redis_url(self) -> str:
        if self.redis_url is None:
            raise RuntimeError(
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


def redacted_url(url: str) -> str:
    """A Redis URL with any password replaced, safe for logs."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
