"""A service's own use of the installed package, run by test_package in a fresh virtualenv from
a directory that also holds the service's own ``schemas.py``, ``producers.py`` and
``consumers.py``. Prints one JSON line of what it saw."""

import json
import os
import sys
import time
from typing import Any, cast

import redis
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import spanner

from redis_spanner import (
    AsyncCacheClient,
    CacheClient,
    EventType,
    KeyRefused,
    PermanentError,
    RedisSpannerError,
    Settings,
    TransientError,
    open_database,
    record,
    run_transaction,
)


def write(database: Any, balance: int) -> DatetimeWithNanoseconds:
    def work(tx: Any) -> str:
        tx.insert_or_update("Accounts", ["AccountId", "Owner", "Balance", "UpdatedAt"],
                            [["pkg-1", "pkg", balance, spanner.COMMIT_TIMESTAMP]])
        return record(tx, EventType.ROW_CHANGED, "Accounts", ("pkg-1",))

    committed: DatetimeWithNanoseconds
    _, committed = run_transaction(database, work)
    return committed


def main() -> None:
    import redis_spanner

    assert issubclass(KeyRefused, PermanentError) and issubclass(TransientError, RedisSpannerError)
    assert AsyncCacheClient.from_env is not None
    database = open_database(Settings())
    write(database, 1)
    client = CacheClient.from_env()
    [first] = client.get_many([client.key("account", "pkg-1")])
    committed = write(database, 2)
    version = int(committed.timestamp()) * 10**9 + committed.nanosecond
    entry: dict[str, str] = {}
    deadline = time.monotonic() + float(sys.argv[1])
    store = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    while time.monotonic() < deadline:  # the relay and worker carry the commit to Redis
        # decode_responses=True: fields and values are text, which redis-py's types can't say
        entry = cast(dict[str, str], store.hgetall(first.key))
        if entry.get("v", "0") >= f"{version:020d}":
            break
        time.sleep(0.1)
    after = client.get("account", "pkg-1")
    client.close()
    print(json.dumps({
        "package": redis_spanner.__file__,
        "first": [first.value, first.filled],
        "commit_version": version,
        "entry": entry,
        "after": after,
    }))


if __name__ == "__main__":
    main()
