"""Is each dependency at its configured address at all? A TCP connect bounded in time, done
before a command starts work, so that a wrong or dead address is one clear error within
seconds instead of a client library retrying for minutes."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

from redis_spanner.schemas.errors import ConfigError, TransientError
from redis_spanner.schemas.settings import Settings

PUBSUB, SPANNER, REDIS = "pubsub", "spanner", "redis"
PROBE_SECONDS = 3.0


class Unreachable(TransientError):
    """A dependency does not answer at the configured address."""


def host_port(address: str, variable: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) split; a ``ConfigError`` naming ``variable`` if not."""
    parts = urlsplit(f"//{address}")
    try:
        port = parts.port or default_port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ConfigError(f"{variable}={address!r} is not host:port")
    return parts.hostname, port


def redis_address(url: str) -> tuple[str, int] | None:
    """Where a Redis URL connects over TCP; None for a Unix socket."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return None
    try:
        port = parts.port or 6379
    except ValueError:
        raise ConfigError("REDIS_URL has an invalid port") from None
    if not parts.hostname:
        raise ConfigError("REDIS_URL names no host")
    return parts.hostname, port


def probe(host: str, port: int, what: str, timeout: float = PROBE_SECONDS) -> None:
    """Connect and close; ``Unreachable`` naming ``what`` and the address when that fails."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as e:
        cause = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise Unreachable(f"cannot reach {what} at {host}:{port}: {cause}") from None


def require_reachable(settings: Settings, *components: str,
                      timeout: float = PROBE_SECONDS) -> None:
    """Probe each named component that has a local address: the emulators (when their host is
    set) and Redis. Real Pub/Sub and Spanner are left to the clients' bounded calls."""
    if PUBSUB in components and settings.pubsub_emulator_host:
        host, port = host_port(settings.pubsub_emulator_host, "PUBSUB_EMULATOR_HOST")
        probe(host, port, "the Pub/Sub emulator (PUBSUB_EMULATOR_HOST)", timeout)
    if SPANNER in components and settings.spanner_emulator_host:
        host, port = host_port(settings.spanner_emulator_host, "SPANNER_EMULATOR_HOST")
        probe(host, port, "the Spanner emulator (SPANNER_EMULATOR_HOST)", timeout)
    if REDIS in components:
        from redis_spanner.schemas.redis_connection import client_options

        client_options(settings, settings.require_redis_url())  # TLS and credential settings
        address = redis_address(settings.require_redis_url())
        if address is not None:
            probe(*address, "Redis (REDIS_URL)", timeout=timeout)


def require_external(environ: Mapping[str, str], timeout: float = PROBE_SECONDS) -> None:
    """Probe the components the environment names (the local stack then uses them as they are
    instead of starting its own)."""
    for variable, what in (("PUBSUB_EMULATOR_HOST", "the Pub/Sub emulator"),
                           ("SPANNER_EMULATOR_HOST", "the Spanner emulator")):
        if address := environ.get(variable):
            probe(*host_port(address, variable), f"{what} ({variable})", timeout)
    if (url := environ.get("REDIS_URL")) and (tcp := redis_address(url)) is not None:
        probe(*tcp, "Redis (REDIS_URL)", timeout)


def listenable(host: str, port: int) -> None:
    """A ``ConfigError`` naming the address when a server could not listen there (in use, not
    an address of this machine)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
    except OSError as e:
        cause = e.strerror or str(e)
        raise ConfigError(f"cannot listen on {host}:{port} (--host, --port or PORT): {cause}"
                          ) from None
