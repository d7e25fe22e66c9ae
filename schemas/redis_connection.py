"""redis-py clients built from the settings: one Redis or a Redis Cluster, over plain TCP or
TLS (optionally mutual), with credentials read from a file on every new connection.

Not part of the contract, but shared by both sides: everything that talks to Redis gets its
client here (the consumers' worker, push server, read-through client, verify, rewarm and
dead-letter tools, and the writer's fast path), so all of them honour the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError
from redis_spanner.schemas.errors import ConfigError, TransientError
from redis_spanner.schemas.settings import Settings, redacted_url

RedisClient = redis.Redis | RedisCluster
AsyncRedisClient = aioredis.Redis | AsyncRedisCluster
HEALTH_CHECK_SECONDS = 30
# What redis-py raises when Redis can't be reached or answer: the cluster client's own
# exception (no slot map, every node down) is not a RedisError.
REDIS_ERRORS = (RedisError, RedisClusterException)


def unavailable(where: str, error: Exception) -> TransientError:
    """The project's error for a redis-py failure to reach or hear from Redis at ``where`` (a
    redacted URL): the exception's type only, since its text may quote the server."""
    return TransientError(f"redis unavailable ({where}): {type(error).__name__}")


class PasswordFile(CredentialProvider):
    """Credentials from a file (a mounted Secret Manager secret, say), read afresh each time a
    connection authenticates: after a rotation new connections use the new password, while
    connections already authenticated stay valid for as long as Redis keeps them."""

    def __init__(self, path: Path, username: str | None = None) -> None:
        self.path = path
        self.username = username

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = self.read()
        return (self.username, password) if self.username else (password,)

    def read(self) -> str:
        try:
            password = self.path.read_text().strip("\r\n")
        except OSError as e:
            # A RedisError, so a connection attempt fails as Redis being unavailable would.
            raise AuthenticationError(
                f"cannot read REDIS_SPANNER_REDIS_PASSWORD_FILE {self.path}: "
                f"{e.strerror or type(e).__name__}") from None
        if not password:
            raise AuthenticationError(f"REDIS_SPANNER_REDIS_PASSWORD_FILE {self.path} is empty")
        return password

    def __repr__(self) -> str:
        return f"PasswordFile({str(self.path)!r}, username={self.username!r})"


def connect(settings: Settings) -> RedisClient:
    """A client for ``REDIS_URL`` as the settings describe it. Raises ``ConfigError`` for
    settings that can't work and ``TransientError`` when a cluster can't be reached."""
    url = settings.require_redis_url()
    options = client_options(settings, url)
    where = redacted_url(url)
    if not settings.redis_cluster:
        return redis.Redis.from_url(url, health_check_interval=HEALTH_CHECK_SECONDS, **options)
    try:
        # The cluster client reads the slot map now, from the first node that answers.
        return RedisCluster.from_url(url, **options)
    except (RedisClusterException, RedisError) as e:
        raise TransientError(f"redis cluster unreachable at {where} "
                             f"(REDIS_SPANNER_REDIS_CLUSTER=true): {type(e).__name__}") from None


def connect_async(settings: Settings) -> AsyncRedisClient:
    """The asyncio twin of ``connect``: the same URL, TLS, credential and cluster settings.
    The cluster client reads its slot map on first use."""
    url = settings.require_redis_url()
    options = client_options(settings, url)
    if not settings.redis_cluster:
        return aioredis.Redis.from_url(url, health_check_interval=HEALTH_CHECK_SECONDS, **options)
    return AsyncRedisCluster.from_url(url, **options)


def client_options(settings: Settings, url: str) -> dict[str, Any]:
    """redis-py keyword arguments for the TLS, credential and timeout settings."""
    parts = _split(url)
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }
    tls = {  # redis-py option: (setting, path)
        "ssl_ca_certs": ("REDIS_SPANNER_REDIS_CA_FILE", settings.redis_ca_file),
        "ssl_certfile": ("REDIS_SPANNER_REDIS_CERT_FILE", settings.redis_cert_file),
        "ssl_keyfile": ("REDIS_SPANNER_REDIS_KEY_FILE", settings.redis_key_file),
    }
    chosen = {option: (setting, path) for option, (setting, path) in tls.items() if path}
    if chosen and parts.scheme != "rediss":
        raise ConfigError(f"{', '.join(s for s, _ in chosen.values())} need a rediss:// "
                          f"REDIS_URL (it is {parts.scheme}://)")
    if (settings.redis_cert_file is None) != (settings.redis_key_file is None):
        raise ConfigError("REDIS_SPANNER_REDIS_CERT_FILE and REDIS_SPANNER_REDIS_KEY_FILE go "
                          "together (mutual TLS): set both or neither")
    for option, (setting, path) in chosen.items():
        _readable(path, setting)
        options[option] = str(path)
    if settings.redis_password_file is not None:
        if parts.username or parts.password:
            raise ConfigError("REDIS_URL carries credentials and REDIS_SPANNER_REDIS_PASSWORD_FILE"
                              " is set: drop them from the URL (the username goes in "
                              "REDIS_SPANNER_REDIS_USERNAME)")
        _readable(settings.redis_password_file, "REDIS_SPANNER_REDIS_PASSWORD_FILE")
        options["credential_provider"] = PasswordFile(settings.redis_password_file,
                                                      settings.redis_username)
    elif settings.redis_username is not None:
        if parts.username:
            raise ConfigError("REDIS_URL names a user and REDIS_SPANNER_REDIS_USERNAME is set: "
                              "keep one")
        options["username"] = settings.redis_username
    return options


def _split(url: str) -> Any:
    """The URL's parts. A URL that won't do is refused without echoing it (it may hold a
    password)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError("REDIS_URL must look like redis://[user:password@]host:port/db or "
                          "rediss://...")
    return parts


def _readable(path: Path, setting: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise ConfigError(f"{setting}={path} is not readable: "
                          f"{e.strerror or type(e).__name__}") from None
