"""Read-through cache client for services: Redis first, Spanner on a miss, guarded fill.

``CacheClient`` runs the read-through of ``redis_spanner.consumers.read_flow`` (fills through
the guard, fill leases, ``verify=True``, slow fills and foreign entries) with blocking calls;
``redis_spanner.consumers.readthrough_async`` runs the same flow on asyncio.

    client = CacheClient.from_env()
    account = client.get("account", "a-1")
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from redis_spanner.consumers import field_crypto
from redis_spanner.consumers.core import CacheWriter, RowReader
from redis_spanner.consumers.read_flow import FillPolicy, LeasePolicy, Read, get_many
from redis_spanner.consumers.read_requests import (
    AcquireLeases,
    RawEntries,
    ReadRows,
    ReadVersions,
    ReleaseLeases,
    Request,
    Sleep,
    Write,
)
from redis_spanner.consumers.redis_cache import RedisCache
from redis_spanner.consumers.spanner_rows import SpannerRows, open_database
from redis_spanner.schemas.catalog import load_catalog
from redis_spanner.schemas.keys import CacheKey, Catalog
from redis_spanner.schemas.settings import Settings, get_settings

__all__ = ["CacheClient", "FillPolicy", "LeasePolicy", "LeasingCache", "Read", "ReadThrough",
           "VersionReader"]


C = TypeVar("C")


class LeasingCache(CacheWriter, Protocol):
    def raw(self, keys: Sequence[str]) -> list[dict[str, str] | str]: ...
    def acquire_leases(self, lease_keys: Sequence[str], token: str, ttl_ms: int
                       ) -> list[bool]: ...
    def release_leases(self, lease_keys: Sequence[str], token: str) -> None: ...


class VersionReader(RowReader, Protocol):
    def read_versions(self, keys: Sequence[CacheKey]) -> tuple[dict[str, int | None], int]: ...


class ReadThroughClient(Generic[C]):
    """What both read-through clients hold: the catalog, a guarded cache with fill leases
    (blocking or asyncio, ``C``), a Spanner reader and the lease and fill policies."""

    def __init__(
        self,
        catalog: Catalog,
        cache: C,
        rows: VersionReader,
        leases: LeasePolicy | None = None,
        fills: FillPolicy | None = None,
    ) -> None:
        self._catalog = catalog
        self._cache = cache
        self._rows = rows
        self._leases = leases or LeasePolicy()
        self._fills = fills or FillPolicy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._cache!r}, namespace={self._catalog.namespace!r})"

    def key(self, template: str, *parts: object) -> CacheKey:
        return self._catalog.key(self._catalog.template(template), parts)


def from_env_parts(settings: Settings | None) -> tuple[Settings, Catalog, SpannerRows,
                                                         FillPolicy]:
    """What ``from_env`` builds either client from: the settings, their catalog, a Spanner
    reader and the fill policy of their tombstone TTL and version skew."""
    settings = settings or get_settings()
    return (settings, load_catalog(settings.catalog, settings.namespace),
            SpannerRows(open_database(settings)),
            FillPolicy.for_tombstone_ttl(settings.tombstone_ttl_seconds,
                                         settings.max_version_skew_seconds))


class CacheClient(ReadThroughClient[LeasingCache]):
    """Reads cache keys through Redis, falling back to Spanner; safe to share across threads."""

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> CacheClient:
        """The client the environment describes: ``REDIS_URL``, the Spanner database and the
        catalog of ``REDIS_SPANNER_*`` settings (see the README's settings table)."""
        settings, catalog, rows, fills = from_env_parts(settings)
        crypto = field_crypto.from_settings(settings, catalog)
        return cls(catalog, RedisCache.from_settings(settings, crypto), rows, fills=fills)

    def get(self, template: str, *parts: object, verify: bool = False) -> Any:
        """The value of one key: ``get("account", "a-1")``; ``None`` when the row is missing."""
        return self.get_many([self.key(template, *parts)], verify=verify)[0].value

    def get_many(self, keys: Sequence[CacheKey], *, verify: bool = False) -> list[Read]:
        """One Redis round trip for all keys; one Spanner snapshot for the misses."""
        flow = get_many(keys, verify, self._leases, self._fills)
        answer: Any = None
        error: BaseException | None = None
        while True:
            try:
                request = flow.throw(error) if error is not None else flow.send(answer)
            except StopIteration as done:
                result: list[Read] = done.value
                return result
            try:
                answer, error = self._do(request), None
            except BaseException as e:  # the flow gives its leases back, then re-raises
                answer, error = None, e

    def _do(self, request: Request) -> Any:
        match request:
            case RawEntries(keys):
                return self._cache.raw(keys)
            case ReadRows(keys):
                return self._rows.read(keys)
            case ReadVersions(keys):
                return self._rows.read_versions(keys)
            case AcquireLeases(lease_keys, token, ttl_ms):
                return self._cache.acquire_leases(lease_keys, token, ttl_ms)
            case ReleaseLeases(lease_keys, token):
                return self._cache.release_leases(lease_keys, token)
            case Write(ops, tolerant):
                try:
                    return self._cache.apply(ops)
                except Exception:  # a foreign entry may get any answer from the guard
                    if tolerant:
                        return None
                    raise
            case Sleep(seconds):
                return time.sleep(seconds)

    def close(self) -> None:
        client = getattr(self._cache, "client", None)
        if client is not None:
            client.close()


ReadThrough = CacheClient
"""The name the pipeline's own code uses."""
