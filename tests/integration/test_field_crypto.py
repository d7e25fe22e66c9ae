"""Field encryption on the real Redis and Spanner emulator: a catalog marks Accounts.Owner
sensitive; the read-through client, rewarm and verify run as services and operators run them,
through ``from_env`` and the command line."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from google.cloud import pubsub_v1, spanner  # type: ignore[attr-defined]
from redis_spanner.consumers.dead_letter_scan import collect
from redis_spanner.consumers.messages import Inbound
from redis_spanner.consumers.pubsub import DeadLetterPublisher, HoldSubscription
from redis_spanner.consumers.readthrough import CacheClient
from redis_spanner.infra.cli.app import app
from redis_spanner.producers.spanner import run_transaction
from redis_spanner.schemas.catalog import ACCOUNT, TEAM, TEAM_MEMBERS, load_catalog
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import RetriesExhausted
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.settings import Settings, get_settings
from typer.testing import CliRunner

from tests.waiting import wait_until

SENSITIVE = (replace(ACCOUNT, sensitive=("Owner",)), TEAM, TEAM_MEMBERS)
IDS = [f"fc-{n}" for n in range(6)]


def owner(account: str) -> str:
    return f"secret-owner-{account}-plaintext"


@pytest.fixture
def keyring(provisioned: Settings, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the settings at a catalog with a sensitive column and a keyring holding ``ids``."""
    path = tmp_path / "keyring"
    keys = {name: base64.b64encode(os.urandom(32)).decode() for name in ("k1", "k2", "k3")}
    monkeypatch.setenv("REDIS_SPANNER_CATALOG", f"{__name__}:SENSITIVE")
    monkeypatch.setenv("REDIS_SPANNER_KEYRING", str(path))

    def use(*ids: str) -> None:
        path.write_text("".join(f"{i}:{keys[i]}\n" for i in ids))
        get_settings.cache_clear()

    return use


def seed(database: Any) -> None:
    def work(tx: Any) -> None:
        tx.insert_or_update("Accounts", ("AccountId", "Owner", "Balance", "UpdatedAt"),
                            [[i, owner(i), 100 + n, spanner.COMMIT_TIMESTAMP]
                             for n, i in enumerate(IDS)])
    run_transaction(database, work)


def stored(redis_client: redis.Redis, client: CacheClient, account: str) -> str:
    return str(redis_client.hget(client.key("account", account).key, "d"))


def read_all(client: CacheClient) -> list[Any]:
    return client.get_many([client.key("account", i) for i in IDS])


def test_sensitive_columns_are_ciphertext_in_redis_and_plaintext_to_readers(
    provisioned: Settings, database: Any, redis_client: redis.Redis,
    keyring: Callable[..., None],
) -> None:
    """Values filled by the read-through client hold the sensitive column only as
    ciphertext with its key id (no plaintext byte of it in Redis); readers get the plaintext
    back, with verify=True too; verify, comparing plaintexts, finds nothing stale."""
    keyring("k1")
    seed(database)
    client = CacheClient.from_env()
    first = read_all(client)
    assert all(r.filled and r.value["Owner"] == owner(i) for r, i in zip(first, IDS, strict=True))
    for i in IDS:
        data = stored(redis_client, client, i)
        assert owner(i) not in data and "secret-owner" not in data
        assert json.loads(data)["Owner"].startswith("rsenc:v1:k1:")
        assert json.loads(data)["Balance"] == 100 + IDS.index(i)
    hits = read_all(client)
    assert all(r.hit and r.value["Owner"] == owner(i) for r, i in zip(hits, IDS, strict=True))
    assert all(r.value["Owner"] == owner(i) for r, i in
               zip(client.get_many([client.key("account", i) for i in IDS], verify=True),
                   IDS, strict=True))

    result = CliRunner().invoke(app, ["verify", "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["checked"] >= len(IDS) and report["stale"] == 0


def test_rotation_keeps_reads_working_and_a_removed_key_is_a_miss_and_a_refill(
    provisioned: Settings, database: Any, redis_client: redis.Redis,
    keyring: Callable[..., None],
) -> None:
    """With a new primary put first, values sealed with the old key are still hits; rewarm
    re-seals every value with the new key; once the old key is gone nothing breaks; and
    values sealed with a key removed from the keyring read as misses that refill, sealed with
    the primary, with the right plaintext."""
    keyring("k1")
    seed(database)
    assert all(r.filled for r in read_all(CacheClient.from_env()))

    keyring("k2", "k1")
    rotated = CacheClient.from_env()
    reads = read_all(rotated)
    assert all(r.hit and r.value["Owner"] == owner(i) for r, i in zip(reads, IDS, strict=True))
    result = CliRunner().invoke(app, ["rewarm", "--table", "Accounts", "--key-prefix", "fc-"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert all(json.loads(stored(redis_client, rotated, i))["Owner"].startswith(
        "rsenc:v1:k2:") for i in IDS)

    keyring("k2")
    assert all(r.hit and r.value["Owner"] == owner(i)
               for r, i in zip(read_all(CacheClient.from_env()), IDS, strict=True))

    keyring("k3")
    fresh = CacheClient.from_env()
    refilled = read_all(fresh)
    assert all(not r.hit and r.filled and r.value["Owner"] == owner(i)
               for r, i in zip(refilled, IDS, strict=True))
    assert all(json.loads(stored(redis_client, fresh, i))["Owner"].startswith("rsenc:v1:k3:")
               for i in IDS)
    assert all(r.hit for r in read_all(fresh))


def test_dead_letters_carry_no_sensitive_payload_and_dlq_show_redacts_it(
    provisioned: Settings, keyring: Callable[..., None],
) -> None:
    """The consumer's dead-letter publisher drops the sensitive payload columns before the
    letter leaves; a letter that reached the topic some other way with them in the clear is
    shown by dlq show with them redacted, the other columns as they are."""
    keyring("k1")
    catalog = load_catalog(f"{__name__}:SENSITIVE", provisioned.namespace)
    gave_up = Event("5d1c9e2b-0fc1", EventType.ROW_CHANGED, "Accounts", ("fc-1",), 10**18,
                    payload={"Owner": owner("fc-1"), "Balance": 7})
    publisher = DeadLetterPublisher(provisioned.dead_letter_topic_path,
                                    provisioned.subscription_path,
                                    redact=catalog.sensitive_columns)
    publisher.send(Inbound("orig-1", gave_up.encode(), gave_up.attributes()),
                   RetriesExhausted("redis unavailable"))
    publisher.close()
    forwarded = Event("5d1c9e2b-0fc2", EventType.ROW_CHANGED, "Accounts", ("fc-2",), 10**18,
                      payload={"Owner": owner("fc-2"), "Balance": 8})
    pubsub_v1.PublisherClient().publish(provisioned.dead_letter_topic_path, forwarded.encode(),
                                        **forwarded.attributes()).result()
    hold = HoldSubscription(provisioned.dead_letter_subscription_path, wait=0.5)
    try:
        wait_until(lambda: len(collect(hold)) == 2)
        letters = {letter.event_id: letter for letter in collect(hold)}
    finally:
        hold.close()
    assert b"secret-owner" not in letters[gave_up.event_id].data
    assert json.loads(letters[gave_up.event_id].data)["payload"] == {"Owner": "[redacted]",
                                                                    "Balance": 7}
    assert b"secret-owner" in letters[forwarded.event_id].data
    for event_id in (gave_up.event_id, forwarded.event_id):
        for args in (["show", event_id], ["show", event_id, "--json"]):
            shown = CliRunner().invoke(app, ["dlq", "--wait", "0.5", *args])
            assert shown.exit_code == 0, shown.stdout + shown.stderr
            assert "secret-owner" not in shown.stdout + shown.stderr
            assert "[redacted]" in shown.stdout
