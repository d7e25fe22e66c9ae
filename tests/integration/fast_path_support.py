"""Commits through the writer's fast paths as a service builds them from its environment."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from redis_spanner.producers.fast_path import FastPath
from redis_spanner.producers.fast_path_async import AsyncFastPath, run_transaction_async
from redis_spanner.producers.spanner import run_transaction


def commit_through_from_env(
    database: Any, async_work: Callable[[Any], Any], sync_work: Callable[[Any], Any],
    check: Callable[[FastPath | AsyncFastPath], None] = lambda _: None,
) -> tuple[dt.datetime, dt.datetime]:
    """Commit ``async_work`` with ``AsyncFastPath.from_env()``, then ``sync_work`` with
    ``FastPath.from_env()``, calling ``check`` on each fast path after its commit, while it is
    still open. Returns both commit timestamps."""

    async def commit_async() -> dt.datetime:
        fast = AsyncFastPath.from_env()
        try:
            _, committed = await run_transaction_async(database, async_work, fast_path=fast)
            check(fast)
            return committed  # type: ignore[no-any-return]
        finally:
            await fast.aclose()

    committed_async = asyncio.run(commit_async())
    fast_path = FastPath.from_env()
    try:
        _, committed = run_transaction(database, sync_work, fast_path=fast_path)
        check(fast_path)
    finally:
        fast_path.close()
    return committed_async, committed
