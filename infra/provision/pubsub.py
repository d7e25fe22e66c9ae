"""Pub/Sub provisioning: the events, heal and dead-letter topics, the consumer's subscription,
the heal subscription and the dead-letter hold subscription, created or converged from the
declaration; on GCP, the grants that let Pub/Sub forward undelivered messages to the heal topic.
And their deletion.

The consumer subscription's dead-letter policy points at the heal topic: what Pub/Sub gives up
on was never applied, and the worker applies it once Redis and Spanner are back. The heal topic
and subscription take the dead-letter topic's and hold subscription's policies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from typing import Any

from google.api_core import exceptions
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from redis_spanner.infra.provision.declaration import Declaration
from redis_spanner.infra.provision.report import (
    BOUNDED,
    CALL_TIMEOUT_SECONDS,
    Action,
    ProvisionError,
    ProvisionReport,
    ResourceResult,
    step,
)
from redis_spanner.schemas.settings import Settings

# Fields compared and, on drift, updated in place. Topic and ordering cannot change in place.
_SUBSCRIPTION_FIELDS = ("ack_deadline_seconds", "message_retention_duration",
                        "dead_letter_policy", "retry_policy", "expiration_policy")


def provision_pubsub(
    settings: Settings,
    declaration: Declaration,
    report: ProvisionReport,
    *,
    emulated: bool,
    project_number: int | None,
) -> None:
    """Create what is missing, update what drifted; grant dead-lettering unless ``emulated``."""
    with pubsub_v1.PublisherClient() as publisher, pubsub_v1.SubscriberClient() as subscriber:
        for topic in _topics(settings, declaration):
            report.resources.append(_ensure_topic(publisher, topic))
        for subscription in _subscriptions(settings, declaration):
            report.resources.append(_ensure_subscription(subscriber, subscription))
        if not emulated:
            grant_dead_lettering(publisher, subscriber, settings, project_number, report)


def delete_pubsub(settings: Settings) -> list[str]:
    """Delete the subscriptions, then the topics; the paths of those that existed."""
    return delete_paths((settings.subscription_path, settings.heal_subscription_path,
                         settings.dead_letter_subscription_path),
                        (settings.topic_path, settings.heal_topic_path,
                         settings.dead_letter_topic_path))


def delete_paths(subscriptions: Sequence[str], topics: Sequence[str]) -> list[str]:
    """Delete these subscriptions, then these topics; the paths of those that existed."""
    deleted: list[str] = []
    with pubsub_v1.PublisherClient() as publisher, pubsub_v1.SubscriberClient() as subscriber:
        for path in subscriptions:
            with step(f"deleting {path}"), suppress(exceptions.NotFound):
                subscriber.delete_subscription(subscription=path, **BOUNDED)
                deleted.append(path)
        for path in topics:
            with step(f"deleting {path}"), suppress(exceptions.NotFound):
                publisher.delete_topic(topic=path, **BOUNDED)
                deleted.append(path)
    return deleted


def _topics(settings: Settings, declaration: Declaration) -> list[pubsub_v1.types.Topic]:
    return [
        pubsub_v1.types.Topic(
            name=path, message_retention_duration={"seconds": policy.message_retention_seconds}
        )
        for path, policy in ((settings.topic_path, declaration.topic),
                             (settings.heal_topic_path, declaration.dead_letter_topic),
                             (settings.dead_letter_topic_path, declaration.dead_letter_topic))
    ]


def _subscriptions(
    settings: Settings, declaration: Declaration
) -> tuple[pubsub_v1.types.Subscription, ...]:
    hold = declaration.dead_letter_subscription
    sub = declaration.subscription
    return (
        pubsub_v1.types.Subscription(
            name=settings.dead_letter_subscription_path,
            topic=settings.dead_letter_topic_path,
            ack_deadline_seconds=hold.ack_deadline_seconds,
            message_retention_duration={"seconds": hold.message_retention_seconds},
            expiration_policy={},  # no ttl: never expires, however long no dead letter comes
        ),
        pubsub_v1.types.Subscription(  # no dead-letter policy: the heal loop bounds itself
            name=settings.heal_subscription_path,
            topic=settings.heal_topic_path,
            ack_deadline_seconds=hold.ack_deadline_seconds,
            message_retention_duration={"seconds": hold.message_retention_seconds},
            expiration_policy={},
        ),
        pubsub_v1.types.Subscription(
            name=settings.subscription_path,
            topic=settings.topic_path,
            ack_deadline_seconds=sub.ack_deadline_seconds,
            message_retention_duration={"seconds": sub.message_retention_seconds},
            expiration_policy={},
            enable_message_ordering=False,
            dead_letter_policy={"dead_letter_topic": settings.heal_topic_path,
                                "max_delivery_attempts": sub.max_delivery_attempts},
            retry_policy={"minimum_backoff": {"seconds": sub.retry_minimum_backoff_seconds},
                          "maximum_backoff": {"seconds": sub.retry_maximum_backoff_seconds}},
        ),
    )


def _ensure(kind: str, wanted: Any, get: Callable[[], Any], create: Callable[[], object],
            converge: Callable[[Any], tuple[str, ...]]) -> ResourceResult:
    """Create ``wanted`` when ``get`` finds nothing; else ``converge`` updates what drifted
    from it and names the fields it changed."""
    with step(f"provisioning {wanted.name}"):
        try:
            current = get()
        except exceptions.NotFound:
            create()
            return ResourceResult(kind, wanted.name, "created")
        changed = converge(current)
    return ResourceResult(kind, wanted.name, "updated" if changed else "unchanged", changed)


def _ensure_topic(
    publisher: pubsub_v1.PublisherClient, wanted: pubsub_v1.types.Topic
) -> ResourceResult:
    def converge(current: pubsub_v1.types.Topic) -> tuple[str, ...]:
        if current.message_retention_duration == wanted.message_retention_duration:
            return ()
        publisher.update_topic(
            request={"topic": wanted, "update_mask": {"paths": ["message_retention_duration"]}},
            **BOUNDED,
        )
        return ("message_retention_duration",)

    return _ensure(
        "pubsub topic", wanted,
        partial(publisher.get_topic, topic=wanted.name, **BOUNDED),
        partial(publisher.create_topic, request=wanted, **BOUNDED),
        converge,
    )


def _ensure_subscription(
    subscriber: pubsub_v1.SubscriberClient, wanted: pubsub_v1.types.Subscription
) -> ResourceResult:
    def converge(current: pubsub_v1.types.Subscription) -> tuple[str, ...]:
        for immutable in ("topic", "enable_message_ordering"):
            if getattr(current, immutable) != getattr(wanted, immutable):
                raise ProvisionError(
                    f"{wanted.name} has {immutable}={getattr(current, immutable)!r}, the "
                    f"declaration wants {getattr(wanted, immutable)!r}; this cannot change in "
                    "place: delete the subscription and provision again"
                )
        drifted = tuple(f for f in _SUBSCRIPTION_FIELDS
                        if getattr(current, f) != getattr(wanted, f))
        if drifted:
            subscriber.update_subscription(
                request={"subscription": wanted, "update_mask": {"paths": list(drifted)}},
                **BOUNDED,
            )
        return drifted

    return _ensure(
        "pubsub subscription", wanted,
        partial(subscriber.get_subscription, subscription=wanted.name,
                **BOUNDED),
        partial(subscriber.create_subscription, request=wanted, **BOUNDED),
        converge,
    )


def grant_dead_lettering(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    settings: Settings,
    project_number: int | None,
    report: ProvisionReport,
) -> None:
    """Let the Pub/Sub service agent forward undelivered messages to the heal topic (GCP only;
    the emulator needs none)."""
    number = project_number or _lookup_project_number(settings.project)
    if number is None:
        report.warnings.append(
            f"could not determine the number of project {settings.project}: grant "
            "service-<project-number>@gcp-sa-pubsub.iam.gserviceaccount.com "
            f"roles/pubsub.publisher on {settings.heal_topic_path} and "
            f"roles/pubsub.subscriber on {settings.subscription_path}, or provision again "
            "with the project number"
        )
        return
    member = f"serviceAccount:service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    for client, resource, role in (
        (publisher, settings.heal_topic_path, "roles/pubsub.publisher"),
        (subscriber, settings.subscription_path, "roles/pubsub.subscriber"),
    ):
        with step(f"granting {role} on {resource}"):
            policy = client.get_iam_policy(request={"resource": resource},
                                           timeout=CALL_TIMEOUT_SECONDS)
            if any(b.role == role and member in b.members for b in policy.bindings):
                action: Action = "unchanged"
            else:
                policy.bindings.add(role=role, members=[member])
                client.set_iam_policy(request={"resource": resource, "policy": policy},
                                      timeout=CALL_TIMEOUT_SECONDS)
                action = "created"
        report.resources.append(ResourceResult("iam binding", resource, action,
                                               (f"{role} for {member}",)))


def _lookup_project_number(project: str) -> int | None:
    """The project's number from Resource Manager, or None when it cannot be read."""
    try:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        response = AuthorizedSession(credentials).get(
            f"https://cloudresourcemanager.googleapis.com/v3/projects/{project}",
            timeout=CALL_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        return int(response.json()["name"].removeprefix("projects/"))
    except Exception:  # best effort: the caller reports what to grant by hand
        return None
