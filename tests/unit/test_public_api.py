"""The public API: what ``from redis_spanner import ...`` gives a service, and nothing more."""

from __future__ import annotations

import subprocess
import sys

import pytest

import redis_spanner

PUBLIC = {
    "record", "run_transaction", "open_database", "CacheClient", "AsyncCacheClient",
    "EventType", "Settings", "Read", "RedisSpannerError", "TransientError", "PermanentError",
    "DecodeError", "KeyRefused", "EventTooLarge", "UnknownEventType", "FastPath",
    "AsyncFastPath", "run_transaction_async",
}


def test_every_public_name_imports_and_nothing_else_is_exported() -> None:
    """``__all__`` is exactly the documented API, and each name resolves to a real object."""
    assert set(redis_spanner.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(redis_spanner, name) is not None
    errors = [redis_spanner.TransientError, redis_spanner.PermanentError]
    assert all(issubclass(e, redis_spanner.RedisSpannerError) for e in errors)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'ReadThrough'"):
        redis_spanner.ReadThrough  # noqa: B018


def test_importing_the_package_loads_no_client_library() -> None:
    """``import redis_spanner`` is cheap: the SDKs load when a name that needs them is used."""
    probe = ("import sys, redis_spanner; "
             "print(sorted(m for m in ('google.cloud.spanner', 'google.cloud.pubsub', 'redis') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
