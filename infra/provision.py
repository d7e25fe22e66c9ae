"""Create or converge the pipeline's resources from the one declaration, idempotently.

The same code serves the emulators and GCP: the client libraries follow PUBSUB_EMULATOR_HOST
and SPANNER_EMULATOR_HOST. Names come from `Settings`, policies from infra/pipeline.json.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from google.api_core import exceptions
from google.cloud import pubsub_v1, spanner

from infra.declaration import Declaration, load_declaration
from infra.spanner.ddl import load_schema, missing_statements
from schemas.errors import RedisSpannerError
from schemas.settings import Settings

Action = Literal["created", "updated", "unchanged"]
CALL_TIMEOUT_SECONDS = 60.0
# Fields compared and, on drift, updated in place. Topic and ordering cannot change in place.
_SUBSCRIPTION_FIELDS = ("ack_deadline_seconds", "message_retention_duration",
                        "dead_letter_policy", "retry_policy", "expiration_policy")


class ProvisionError(RedisSpannerError):
    """A resource could not be created or converged; the message says which and why."""


@dataclass(frozen=True)
class ResourceResult:
    kind: str
    name: str
    action: Action
    details: tuple[str, ...] = ()


@dataclass
class ProvisionReport:
    resources: list[ResourceResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def action(self, name: str) -> Action:
        """What happened to the resource with this full name."""
        for result in self.resources:
            if result.name == name:
                return result.action
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def provision(
    settings: Settings,
    declaration: Declaration | None = None,
    *,
    project_number: int | None = None,
    operation_timeout: float = 600.0,
) -> ProvisionReport:
    """Create what is missing, update what drifted; report each resource's action."""
    declaration = declaration or load_declaration()
    started = time.monotonic()
    report = ProvisionReport()
    pubsub_emulated = _emulator_host("PUBSUB_EMULATOR_HOST", settings.pubsub_emulator_host)
    spanner_emulated = _emulator_host("SPANNER_EMULATOR_HOST", settings.spanner_emulator_host)
    if settings.max_delivery_attempts != declaration.subscription.max_delivery_attempts:
        report.warnings.append(
            f"settings say max_delivery_attempts={settings.max_delivery_attempts} but the "
            f"subscription dead-letters after {declaration.subscription.max_delivery_attempts}"
        )
    with pubsub_v1.PublisherClient() as publisher, pubsub_v1.SubscriberClient() as subscriber:
        _provision_pubsub(publisher, subscriber, settings, declaration, report)
        if not pubsub_emulated:
            _grant_dead_lettering(publisher, subscriber, settings, project_number, report)
    _provision_spanner(settings, declaration, spanner_emulated, operation_timeout, report)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def teardown(settings: Settings, *, delete_instance: bool = False) -> list[str]:
    """Delete the subscriptions, topics and database (and the instance only if asked)."""
    deleted: list[str] = []
    with pubsub_v1.PublisherClient() as publisher, pubsub_v1.SubscriberClient() as subscriber:
        for path in (settings.subscription_path, settings.dead_letter_subscription_path):
            with _step(f"deleting {path}"), suppress(exceptions.NotFound):
                subscriber.delete_subscription(subscription=path, timeout=CALL_TIMEOUT_SECONDS)
                deleted.append(path)
        for path in (settings.topic_path, settings.dead_letter_topic_path):
            with _step(f"deleting {path}"), suppress(exceptions.NotFound):
                publisher.delete_topic(topic=path, timeout=CALL_TIMEOUT_SECONDS)
                deleted.append(path)
    with closing(spanner.Client(project=settings.project, disable_builtin_metrics=True)) as client:
        instance = client.instance(settings.instance)
        database = instance.database(settings.database)
        with _step(f"deleting {database.name}"):
            if database.exists():
                database.drop()
                deleted.append(database.name)
            if delete_instance and instance.exists():
                instance.delete()
                deleted.append(instance.name)
    return deleted


def format_report(report: ProvisionReport) -> str:
    """One line per resource, details indented under it, warnings last."""
    lines = []
    for r in report.resources:
        lines.append(f"{r.action:<10} {r.kind:<22} {r.name}")
        lines.extend(f"{'':<10} {'':<22} - {detail}" for detail in r.details)
    lines.extend(f"warning: {warning}" for warning in report.warnings)
    lines.append(f"done in {report.seconds:.1f}s")
    return "\n".join(lines)


# --- Pub/Sub -----------------------------------------------------------------------------


def _provision_pubsub(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    settings: Settings,
    declaration: Declaration,
    report: ProvisionReport,
) -> None:
    for path, policy in ((settings.topic_path, declaration.topic),
                         (settings.dead_letter_topic_path, declaration.dead_letter_topic)):
        wanted = pubsub_v1.types.Topic(
            name=path, message_retention_duration={"seconds": policy.message_retention_seconds}
        )
        report.resources.append(_ensure_topic(publisher, wanted))

    hold = declaration.dead_letter_subscription
    sub = declaration.subscription
    subscriptions = (
        pubsub_v1.types.Subscription(
            name=settings.dead_letter_subscription_path,
            topic=settings.dead_letter_topic_path,
            ack_deadline_seconds=hold.ack_deadline_seconds,
            message_retention_duration={"seconds": hold.message_retention_seconds},
            expiration_policy={},  # no ttl: never expires, however long no dead letter comes
        ),
        pubsub_v1.types.Subscription(
            name=settings.subscription_path,
            topic=settings.topic_path,
            ack_deadline_seconds=sub.ack_deadline_seconds,
            message_retention_duration={"seconds": sub.message_retention_seconds},
            expiration_policy={},
            enable_message_ordering=False,
            dead_letter_policy={"dead_letter_topic": settings.dead_letter_topic_path,
                                "max_delivery_attempts": sub.max_delivery_attempts},
            retry_policy={"minimum_backoff": {"seconds": sub.retry_minimum_backoff_seconds},
                          "maximum_backoff": {"seconds": sub.retry_maximum_backoff_seconds}},
        ),
    )
    for wanted in subscriptions:
        report.resources.append(_ensure_subscription(subscriber, wanted))


def _ensure_topic(
    publisher: pubsub_v1.PublisherClient, wanted: pubsub_v1.types.Topic
) -> ResourceResult:
    kind = "pubsub topic"
    with _step(f"provisioning {wanted.name}"):
        try:
            current = publisher.get_topic(topic=wanted.name, timeout=CALL_TIMEOUT_SECONDS)
        except exceptions.NotFound:
            publisher.create_topic(request=wanted, timeout=CALL_TIMEOUT_SECONDS)
            return ResourceResult(kind, wanted.name, "created")
        if current.message_retention_duration == wanted.message_retention_duration:
            return ResourceResult(kind, wanted.name, "unchanged")
        publisher.update_topic(
            request={"topic": wanted, "update_mask": {"paths": ["message_retention_duration"]}},
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return ResourceResult(kind, wanted.name, "updated", ("message_retention_duration",))


def _ensure_subscription(
    subscriber: pubsub_v1.SubscriberClient, wanted: pubsub_v1.types.Subscription
) -> ResourceResult:
    kind = "pubsub subscription"
    with _step(f"provisioning {wanted.name}"):
        try:
            current = subscriber.get_subscription(
                subscription=wanted.name, timeout=CALL_TIMEOUT_SECONDS
            )
        except exceptions.NotFound:
            subscriber.create_subscription(request=wanted, timeout=CALL_TIMEOUT_SECONDS)
            return ResourceResult(kind, wanted.name, "created")
        for immutable in ("topic", "enable_message_ordering"):
            if getattr(current, immutable) != getattr(wanted, immutable):
                raise ProvisionError(
                    f"{wanted.name} has {immutable}={getattr(current, immutable)!r}, the "
                    f"declaration wants {getattr(wanted, immutable)!r}; this cannot change in "
                    "place: delete the subscription and provision again"
                )
        drifted = [f for f in _SUBSCRIPTION_FIELDS if getattr(current, f) != getattr(wanted, f)]
        if not drifted:
            return ResourceResult(kind, wanted.name, "unchanged")
        subscriber.update_subscription(
            request={"subscription": wanted, "update_mask": {"paths": drifted}},
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return ResourceResult(kind, wanted.name, "updated", tuple(drifted))


def _grant_dead_lettering(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    settings: Settings,
    project_number: int | None,
    report: ProvisionReport,
) -> None:
    """Let the Pub/Sub service agent forward dead letters (GCP only; the emulator needs none)."""
    number = project_number or _lookup_project_number(settings.project)
    if number is None:
        report.warnings.append(
            f"could not determine the number of project {settings.project}: grant "
            "service-<project-number>@gcp-sa-pubsub.iam.gserviceaccount.com "
            f"roles/pubsub.publisher on {settings.dead_letter_topic_path} and "
            f"roles/pubsub.subscriber on {settings.subscription_path}, or provision again "
            "with the project number"
        )
        return
    member = f"serviceAccount:service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    for client, resource, role in (
        (publisher, settings.dead_letter_topic_path, "roles/pubsub.publisher"),
        (subscriber, settings.subscription_path, "roles/pubsub.subscriber"),
    ):
        with _step(f"granting {role} on {resource}"):
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


# --- Spanner -----------------------------------------------------------------------------


def _provision_spanner(
    settings: Settings,
    declaration: Declaration,
    emulated: bool,
    timeout: float,
    report: ProvisionReport,
) -> None:
    policy = declaration.spanner
    config = policy.emulator_instance_config if emulated else policy.instance_config
    statements = load_schema(declaration.ddl_path)
    with closing(spanner.Client(project=settings.project, disable_builtin_metrics=True)) as client:
        instance = client.instance(
            settings.instance,
            configuration_name=f"projects/{settings.project}/instanceConfigs/{config}",
            display_name=settings.instance,
            processing_units=policy.processing_units,
        )
        with _step(f"provisioning Spanner instance {instance.name}"):
            try:
                instance.reload()  # replaces the wanted config and units by the current ones
            except exceptions.NotFound:
                _wait(instance.create(), timeout, f"creating Spanner instance {instance.name}")
                instance_action: Action = "created"
            else:
                instance_action = "unchanged"
                if not emulated and instance.processing_units != policy.processing_units:
                    report.warnings.append(
                        f"{instance.name} has {instance.processing_units} processing units, "
                        f"the declaration {policy.processing_units}: capacity is left as it is"
                    )
        report.resources.append(
            ResourceResult("spanner instance", instance.name, instance_action)
        )

        database = instance.database(settings.database,
                                     ddl_statements=[s.text for s in statements])
        with _step(f"provisioning Spanner database {database.name}"):
            if not database.exists():
                _wait(database.create(), timeout, f"creating Spanner database {database.name}")
                applied = statements
                action: Action = "created"
            else:
                database.reload()
                applied = missing_statements(statements, database.ddl_statements)
                if applied:
                    _wait(database.update_ddl([s.text for s in applied]), timeout,
                          f"updating the schema of {database.name}")
                action = "updated" if applied else "unchanged"
        report.resources.append(ResourceResult(
            "spanner database", database.name, action,
            tuple(f"applied CREATE {s.kind} {s.name}" for s in applied),
        ))


# --- helpers -----------------------------------------------------------------------------


def _emulator_host(variable: str, configured: str | None) -> bool:
    """Whether the client libraries will talk to an emulator (they read only the env)."""
    actual = os.environ.get(variable)
    if configured and not actual:
        raise ProvisionError(
            f"settings name the emulator {configured} but {variable} is not in the "
            "environment, so the client library would reach GCP: export it"
        )
    return bool(actual)


def _wait(operation: Any, timeout: float, what: str) -> None:
    try:
        operation.result(timeout=timeout)
    except concurrent.futures.TimeoutError as e:
        raise ProvisionError(
            f"{what} did not finish within {timeout:.0f}s (operation "
            f"{operation.operation.name}); it may still complete: provision again later"
        ) from e


@contextmanager
def _step(what: str) -> Iterator[None]:
    try:
        yield
    except exceptions.GoogleAPICallError as e:
        raise ProvisionError(f"{what} failed: {e.code} {e.message}") from e
    except exceptions.RetryError as e:
        raise ProvisionError(f"{what} failed: gave up retrying ({e.cause})") from e
