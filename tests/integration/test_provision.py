"""Provisioning on the real Pub/Sub and Spanner emulators: idempotent, convergent, dead-letters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1, spanner  # type: ignore[attr-defined]
from google.cloud.spanner_v1.database import Database
from google.cloud.spanner_v1.instance import Instance
from google.iam.v1 import policy_pb2
from redis_spanner.infra.provision.declaration import load_declaration
from redis_spanner.infra.provision.pubsub import grant_dead_lettering
from redis_spanner.infra.provision.report import ProvisionError, ProvisionReport
from redis_spanner.infra.provision.run import format_report, provision, teardown
from redis_spanner.infra.spanner.ddl import load_schema
from redis_spanner.schemas.settings import Settings

DECLARATION = load_declaration()


@pytest.fixture
def provisioned(settings: Settings) -> Iterator[Settings]:
    """The test's settings; everything they name is deleted after the test."""
    yield settings
    teardown(settings)


@pytest.fixture
def subscriber(stack: object) -> Iterator[pubsub_v1.SubscriberClient]:
    with pubsub_v1.SubscriberClient() as client:
        yield client


@pytest.fixture
def instance(provisioned: Settings) -> Iterator[Instance]:
    client = spanner.Client(project=provisioned.project, disable_builtin_metrics=True)
    yield client.instance(provisioned.instance)
    client.close()


@pytest.fixture
def database(provisioned: Settings, instance: Instance) -> Database:
    opened: Database = instance.database(provisioned.database)
    return opened


def _pipeline_names(settings: Settings, database: Database) -> set[str]:
    return {settings.topic_path, settings.heal_topic_path, settings.dead_letter_topic_path,
            settings.subscription_path, settings.heal_subscription_path,
            settings.dead_letter_subscription_path, database.name}


def _snapshot(
    settings: Settings, subscriber: pubsub_v1.SubscriberClient, database: Database
) -> list[object]:
    """Everything provisioning decides about, as read back from the emulators."""
    with pubsub_v1.PublisherClient() as publisher:
        topics = [publisher.get_topic(topic=path)
                  for path in (settings.topic_path, settings.heal_topic_path,
                               settings.dead_letter_topic_path)]
    subscriptions = [subscriber.get_subscription(subscription=path) for path in
                     (settings.subscription_path, settings.heal_subscription_path,
                      settings.dead_letter_subscription_path)]
    database.reload()
    return [*topics, *subscriptions, list(database.ddl_statements)]


def _tables(database: Database) -> set[str]:
    with database.snapshot() as snapshot:
        rows = snapshot.execute_sql(
            "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = ''"
        )
        return {row[0] for row in rows}


def test_provisioning_twice_creates_then_changes_nothing(
    provisioned: Settings, subscriber: pubsub_v1.SubscriberClient, database: Database
) -> None:
    """Idempotence: a first run creates every resource, a second reports all unchanged."""
    names = _pipeline_names(provisioned, database)

    first = provision(provisioned)
    before = _snapshot(provisioned, subscriber, database)
    second = provision(provisioned)
    after = _snapshot(provisioned, subscriber, database)

    assert {r.name: r.action for r in first.resources if r.name in names} == dict.fromkeys(
        names, "created")
    assert {r.action for r in second.resources} == {"unchanged"}
    assert {r.name for r in second.resources} == {r.name for r in first.resources}
    assert before == after
    assert not first.warnings
    rendered = format_report(second)
    assert all(name in rendered for name in names)


def test_consumer_subscription_dead_letters_with_backoff_and_no_ordering(
    provisioned: Settings, subscriber: pubsub_v1.SubscriberClient
) -> None:
    """Read back, the consumer subscription holds the declared policies and no ordering, and
    forwards what it gives up on to the heal topic, whose subscription never gives up."""
    provision(provisioned)
    policy = DECLARATION.subscription

    sub = subscriber.get_subscription(subscription=provisioned.subscription_path)
    hold = subscriber.get_subscription(subscription=provisioned.dead_letter_subscription_path)
    heal = subscriber.get_subscription(subscription=provisioned.heal_subscription_path)

    assert sub.topic == provisioned.topic_path
    assert sub.dead_letter_policy.dead_letter_topic == provisioned.heal_topic_path
    assert heal.topic == provisioned.heal_topic_path
    assert not heal.dead_letter_policy.dead_letter_topic
    assert sub.dead_letter_policy.max_delivery_attempts == policy.max_delivery_attempts
    assert sub.retry_policy.minimum_backoff.total_seconds() == policy.retry_minimum_backoff_seconds
    assert sub.retry_policy.maximum_backoff.total_seconds() == policy.retry_maximum_backoff_seconds
    assert sub.ack_deadline_seconds == policy.ack_deadline_seconds
    assert sub.message_retention_duration.total_seconds() == policy.message_retention_seconds
    assert sub.enable_message_ordering is False
    assert hold.topic == provisioned.dead_letter_topic_path
    assert hold.ack_deadline_seconds == DECLARATION.dead_letter_subscription.ack_deadline_seconds


def test_gcloud_sees_the_dead_letter_policy(provisioned: Settings, tmp_path: Path) -> None:
    """Checked from outside the client library: gcloud describes the dead-letter policy."""
    gcloud = shutil.which("gcloud")
    assert gcloud, "gcloud is not on PATH: apt-get install google-cloud-cli"
    provision(provisioned)
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_PROJECT": provisioned.project,
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{os.environ['PUBSUB_EMULATOR_HOST']}/",
    }
    out = subprocess.run(
        [gcloud, "pubsub", "subscriptions", "describe", provisioned.subscription, "--format=json"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=True,
    )
    described = json.loads(out.stdout)

    assert described["deadLetterPolicy"] == {
        "deadLetterTopic": provisioned.heal_topic_path,
        "maxDeliveryAttempts": DECLARATION.subscription.max_delivery_attempts,
    }
    assert "retryPolicy" in described
    assert not described.get("enableMessageOrdering", False)


def test_drifted_subscription_is_updated_back(
    provisioned: Settings, subscriber: pubsub_v1.SubscriberClient
) -> None:
    """Convergence: a subscription changed by hand is put back and reported `updated`."""
    provision(provisioned)
    subscriber.update_subscription(request={
        "subscription": {"name": provisioned.subscription_path, "ack_deadline_seconds": 99,
                         "retry_policy": {"minimum_backoff": {"seconds": 7},
                                          "maximum_backoff": {"seconds": 70}}},
        "update_mask": {"paths": ["ack_deadline_seconds", "retry_policy"]},
    })

    report = provision(provisioned)

    assert report.action(provisioned.subscription_path) == "updated"
    changed = next(r for r in report.resources if r.name == provisioned.subscription_path)
    assert set(changed.details) == {"ack_deadline_seconds", "retry_policy"}
    sub = subscriber.get_subscription(subscription=provisioned.subscription_path)
    assert sub.ack_deadline_seconds == DECLARATION.subscription.ack_deadline_seconds
    assert sub.retry_policy.minimum_backoff.total_seconds() == (
        DECLARATION.subscription.retry_minimum_backoff_seconds)
    assert sub.dead_letter_policy.max_delivery_attempts == (
        DECLARATION.subscription.max_delivery_attempts)
    assert provision(provisioned).action(provisioned.subscription_path) == "unchanged"


def test_subscription_with_ordering_is_refused_not_kept(
    provisioned: Settings, subscriber: pubsub_v1.SubscriberClient
) -> None:
    """An existing ordered subscription cannot be fixed in place: provisioning says so."""
    with pubsub_v1.PublisherClient() as publisher:
        publisher.create_topic(name=provisioned.topic_path)
    subscriber.create_subscription(request={"name": provisioned.subscription_path,
                                            "topic": provisioned.topic_path,
                                            "enable_message_ordering": True})

    with pytest.raises(ProvisionError, match=r"enable_message_ordering.*delete the subscription"):
        provision(provisioned)


def test_schema_tables_exist_after_provisioning(
    provisioned: Settings, database: Database
) -> None:
    """Every table of schema.sql exists in the provisioned database."""
    report = provision(provisioned)

    wanted = {s.name for s in load_schema(DECLARATION.ddl_path) if s.kind == "TABLE"}
    assert _tables(database) == wanted
    assert report.action(database.name) == "created"


def test_partial_database_gets_only_the_missing_statements(
    provisioned: Settings, instance: Instance, database: Database
) -> None:
    """A database with only the first statement gets the rest applied, then nothing more."""
    statements = load_schema(DECLARATION.ddl_path)
    provision(provisioned)  # instance and Pub/Sub
    database.drop()
    partial = instance.database(provisioned.database, ddl_statements=[statements[0].text])
    partial.create().result(timeout=60)

    report = provision(provisioned)

    row = next(r for r in report.resources if r.name == database.name)
    assert row.action == "updated"
    assert row.details == tuple(f"applied CREATE {s.kind} {s.name}" for s in statements[1:])
    assert _tables(database) == {s.name for s in statements if s.kind == "TABLE"}
    assert provision(provisioned).action(database.name) == "unchanged"


def test_nacked_message_is_forwarded_to_the_heal_subscription_not_the_hold(
    provisioned: Settings, subscriber: pubsub_v1.SubscriberClient
) -> None:
    """A message nacked max_delivery_attempts times is forwarded to the heal subscription, not
    to the dead-letter hold."""
    provision(provisioned)
    attempts = DECLARATION.subscription.max_delivery_attempts
    with pubsub_v1.PublisherClient() as publisher:
        publisher.publish(provisioned.topic_path, b"poison").result(timeout=30)

    seen: list[int] = []
    started = time.monotonic()
    dead = None
    while dead is None and time.monotonic() - started < 60:
        pulled = subscriber.pull(request={"subscription": provisioned.subscription_path,
                                          "max_messages": 10, "return_immediately": True})
        for received in pulled.received_messages:
            seen.append(received.delivery_attempt)
            subscriber.modify_ack_deadline(request={
                "subscription": provisioned.subscription_path,
                "ack_ids": [received.ack_id], "ack_deadline_seconds": 0,
            })
        held = subscriber.pull(request={"subscription": provisioned.heal_subscription_path,
                                        "max_messages": 1, "return_immediately": True})
        dead = held.received_messages[0] if held.received_messages else None
        time.sleep(0.05)

    assert dead is not None, f"not dead-lettered after {seen} deliveries in 60s"
    assert dead.message.data == b"poison"
    assert sorted(set(seen)) == list(range(1, attempts + 1))  # every attempt, none beyond
    attributes = dict(dead.message.attributes)
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == str(attempts)
    assert attributes["CloudPubSubDeadLetterSourceSubscription"] == provisioned.subscription
    hold = subscriber.pull(request={"subscription": provisioned.dead_letter_subscription_path,
                                    "max_messages": 1, "return_immediately": True})
    assert not hold.received_messages


class _IamOnly:
    """Holds one IAM policy per resource, like the Pub/Sub IAM API (the emulator has none)."""

    def __init__(self) -> None:
        self.policies: dict[str, policy_pb2.Policy] = {}
        self.writes = 0

    def get_iam_policy(self, request: dict[str, str], timeout: float) -> policy_pb2.Policy:
        stored = self.policies.get(request["resource"], policy_pb2.Policy())
        return policy_pb2.Policy.FromString(stored.SerializeToString())

    def set_iam_policy(self, request: dict[str, Any], timeout: float) -> policy_pb2.Policy:
        self.writes += 1
        self.policies[request["resource"]] = request["policy"]
        return request["policy"]


def test_gcp_dead_lettering_grants_the_service_agent_once() -> None:
    """On GCP the Pub/Sub service agent gets publisher on the heal topic (where it forwards)
    and subscriber on the subscription, next to existing bindings, and a second run changes
    nothing."""
    settings = Settings(GOOGLE_CLOUD_PROJECT="p-gcp")
    publisher, subscriber = _IamOnly(), _IamOnly()
    existing = policy_pb2.Policy()
    existing.bindings.add(role="roles/pubsub.publisher", members=["user:someone@example.com"])
    publisher.policies[settings.heal_topic_path] = existing
    agent = "serviceAccount:service-123@gcp-sa-pubsub.iam.gserviceaccount.com"

    first, second = ProvisionReport(), ProvisionReport()
    grant_dead_lettering(publisher, subscriber, settings, 123, first)
    grant_dead_lettering(publisher, subscriber, settings, 123, second)

    topic_members = {(b.role, m) for b in publisher.policies[settings.heal_topic_path]
                     .bindings for m in b.members}
    assert topic_members == {("roles/pubsub.publisher", "user:someone@example.com"),
                             ("roles/pubsub.publisher", agent)}
    sub_bindings = subscriber.policies[settings.subscription_path].bindings
    assert [(b.role, list(b.members)) for b in sub_bindings] == [
        ("roles/pubsub.subscriber", [agent])]
    assert [r.action for r in first.resources] == ["created", "created"]
    assert [r.action for r in second.resources] == ["unchanged", "unchanged"]
    assert publisher.writes == subscriber.writes == 1


def test_unknown_project_number_reports_what_to_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the project number cannot be found, provisioning does not fail: the report says
    which roles to grant to the service agent, on which resources."""
    settings = Settings(GOOGLE_CLOUD_PROJECT="p-gcp")
    monkeypatch.setattr(
        "redis_spanner.infra.provision.pubsub._lookup_project_number", lambda project: None)
    report = ProvisionReport()

    grant_dead_lettering(_IamOnly(), _IamOnly(), settings, None, report)

    assert report.resources == []
    (warning,) = report.warnings
    assert f"roles/pubsub.publisher on {settings.heal_topic_path}" in warning
    assert f"roles/pubsub.subscriber on {settings.subscription_path}" in warning
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in warning


def test_emulator_in_settings_but_not_in_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Settings naming an emulator the client libraries cannot see stop provisioning before any
    call: the libraries read only the environment, and would otherwise reach GCP."""
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    settings = Settings(PUBSUB_EMULATOR_HOST="127.0.0.1:9")

    with pytest.raises(ProvisionError, match="PUBSUB_EMULATOR_HOST is not in the environment"):
        provision(settings)
