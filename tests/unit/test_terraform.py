"""infra/terraform, read with python-hcl2: the whole deployment is declared, least privilege
holds, and the push path is authenticated end to end. (Terraform itself can't reach its
registry here; checkov runs over the same files in CI.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.settings import Settings

TERRAFORM = Path(__file__).resolve().parents[2] / "infra" / "terraform"
SCHEMA = TERRAFORM.parent / "spanner" / "schema.sql"
# Redis connection settings the Redis TLS/ACL work reads; Terraform passes them to the consumer.
REDIS_SETTINGS = {"REDIS_URL", "REDIS_SPANNER_REDIS_CA_FILE", "REDIS_SPANNER_REDIS_PASSWORD_FILE",
                  "REDIS_SPANNER_REDIS_USERNAME"}


def _clean(value: Any) -> Any:
    """hcl2's tree without its markers, and with quoted strings and keys unquoted."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()
                if k not in ("__is_block__", "__comments__", "__inline_comments__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@cache
def files() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as f:
            found[path.name] = _clean(hcl2.load(f))
    return found


def blocks(kind: str) -> list[dict[str, Any]]:
    return [block for tree in files().values() for block in tree.get(kind, [])]


def resources(rtype: str) -> dict[str, dict[str, Any]]:
    """Resources of one type, by name."""
    return {name: body for block in blocks("resource") for t, named in block.items()
            if t == rtype for name, body in named.items()}


def resource(rtype: str, name: str) -> dict[str, Any]:
    return resources(rtype)[name]


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in blocks("locals"):
        merged.update(block)
    return merged


def variables() -> dict[str, dict[str, Any]]:
    return {name: body for block in blocks("variable") for name, body in block.items()}


def text() -> str:
    return "\n".join(path.read_text() for path in sorted(TERRAFORM.glob("*.tf")))


def services() -> dict[str, dict[str, Any]]:
    return locals_()["services"]  # type: ignore[no-any-return]


def container() -> dict[str, Any]:
    [template] = resource("google_cloud_run_v2_service", "service")["template"]
    [spec] = template["containers"]
    return spec  # type: ignore[no-any-return]


def iam_members() -> list[tuple[str, str, dict[str, Any]]]:
    """(resource type, role, body) of every IAM grant."""
    return [(rtype, body["role"], body) for block in blocks("resource")
            for rtype, named in block.items() if rtype.endswith(("_iam_member", "_iam_binding"))
            for body in named.values()]


# --- Cloud Run ------------------------------------------------------------------------------

def test_one_image_runs_relay_worker_and_push_server() -> None:
    """Three services, relay, worker and push server, from the one image variable, each
    running its CLI command; the pull worker and the relay keep CPU and at least one instance."""
    declared = services()
    assert {role: s["args"][0] for role, s in declared.items()} == {
        "relay": "relay", "worker": "worker", "push": "serve"}
    assert container()["image"] == "${var.image}"
    assert resource("google_cloud_run_v2_service", "service")["for_each"] == "${local.deployed}"
    for role in ("relay", "worker"):
        assert declared[role]["cpu_idle"] is False
    assert variables()["worker_min_instances"]["validation"]
    assert variables()["relay_instances"]["validation"]


def test_startup_and_liveness_probes_call_healthz() -> None:
    """Cloud Run's startup and liveness probes GET /healthz on the served port."""
    spec = container()
    for probe in ("startup_probe", "liveness_probe"):
        [body] = spec[probe]
        [get] = body["http_get"]
        assert get == {"path": "/healthz", "port": "${local.port}"}
    assert spec["ports"] == [{"container_port": "${local.port}"}]


def test_services_are_internal_and_reach_memorystore_through_the_vpc() -> None:
    """No service takes traffic from the internet; all egress to private ranges goes through
    the VPC, where Memorystore is."""
    service = resource("google_cloud_run_v2_service", "service")
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    [template] = service["template"]
    [vpc] = template["vpc_access"]
    assert vpc["egress"] == "PRIVATE_RANGES_ONLY"


# --- Push -------------------------------------------------------------------------------------

def test_push_subscription_signs_tokens_the_server_checks() -> None:
    """The push subscription sends an OIDC token as the push identity for the push audience;
    the push server expects exactly that audience and that email, and Cloud Run accepts it."""
    push = resource("google_pubsub_subscription", "push")
    [config] = push["push_config"]
    assert config["push_endpoint"].endswith("/push")
    [oidc] = config["oidc_token"]
    assert oidc == {"service_account_email": "${google_service_account.push.email}",
                    "audience": "${local.push_audience}"}
    env = services()["push"]["env"]
    assert "REDIS_SPANNER_PUSH_AUDIENCE = local.push_audience" in env
    assert "REDIS_SPANNER_PUSH_SERVICE_ACCOUNT = google_service_account.push.email" in env
    assert "REDIS_SPANNER_PUSH_AUTH" not in text()  # verification stays on
    assert services()["push"]["audiences"] == ["${local.push_audience}"]


def test_only_the_push_identity_may_invoke_the_push_server() -> None:
    """run.invoker is granted once, on the push service, to the push identity; nothing is
    public anywhere."""
    invokers = [(rtype, body) for rtype, role, body in iam_members() if role == "roles/run.invoker"]
    assert len(invokers) == 1
    [(rtype, body)] = invokers
    assert rtype == "google_cloud_run_v2_service_iam_member"
    assert body["name"] == '${google_cloud_run_v2_service.service["push"].name}'
    assert body["member"] == "serviceAccount:${google_service_account.push.email}"
    assert "allUsers" not in text() and "allAuthenticatedUsers" not in text()


def test_every_subscription_with_dead_lettering_lets_the_service_agent_forward() -> None:
    """The Pub/Sub service agent publishes to the heal topic and may ack on every subscription
    that has a dead-letter policy (pull and push, both forwarding to the heal topic), and signs
    push tokens."""
    subscriptions = resources("google_pubsub_subscription")
    dead_lettering = {name for name, body in subscriptions.items() if "dead_letter_policy" in body}
    assert dead_lettering == {"consumer", "push"}
    assert {subscriptions[name]["dead_letter_policy"][0]["dead_letter_topic"]
            for name in dead_lettering} == {"${google_pubsub_topic.heal.id}"}
    assert "dead_letter_policy" not in subscriptions["heal"]
    acks = resource("google_pubsub_subscription_iam_member", "agent_acks_dead_letters")
    assert acks["member"] == "${local.pubsub_service_agent}"
    assert acks["role"] == "roles/pubsub.subscriber"
    assert "pull = var.subscription" in acks["for_each"]
    assert "push = var.push_subscription" in acks["for_each"]
    publishes = resource("google_pubsub_topic_iam_member", "agent_publishes_dead_letters")
    assert (publishes["topic"], publishes["role"], publishes["member"]) == (
        "${google_pubsub_topic.heal.name}", "roles/pubsub.publisher",
        "${local.pubsub_service_agent}")
    signs = resource("google_service_account_iam_member", "agent_signs_push_tokens")
    assert signs["role"] == "roles/iam.serviceAccountTokenCreator"
    assert signs["service_account_id"] == "${google_service_account.push.name}"


def test_the_consumer_publishes_to_the_heal_and_dead_letter_topics_only() -> None:
    """The consumer's identity publishes where the heal loop sends letters (its heal topic, with
    a letter's count; the dead-letter topic) and to no other topic."""
    published = {body["topic"] for rtype, role, body in iam_members()
                 if rtype == "google_pubsub_topic_iam_member"
                 and body["member"] == "serviceAccount:${google_service_account.consumer.email}"}
    assert published == {"${google_pubsub_topic.heal.name}",
                         "${google_pubsub_topic.dead_letter.name}"}


@pytest.mark.parametrize("name", ["consumer", "push"])
def test_subscription_policies_come_from_the_declaration(name: str) -> None:
    """Retention, deadlines, attempts and backoff are read from pipeline.json, not typed twice."""
    body = resource("google_pubsub_subscription", name)
    assert body["ack_deadline_seconds"] == "${local.sub.ack_deadline_seconds}"
    assert body["dead_letter_policy"][0]["max_delivery_attempts"] == (
        "${local.sub.max_delivery_attempts}")
    assert body["enable_message_ordering"] is False
    assert body["expiration_policy"] == [{"ttl": ""}]


# --- Memorystore and secrets ----------------------------------------------------------------

def test_memorystore_is_highly_available_authenticated_and_encrypted() -> None:
    """Standard tier with a replica, AUTH, TLS in transit, and allkeys-lru (volatile-* would
    evict tombstones first)."""
    redis = resource("google_redis_instance", "cache")
    assert redis["tier"] == "STANDARD_HA" and redis["replica_count"] >= 1
    assert redis["auth_enabled"] is True
    assert redis["transit_encryption_mode"] == "SERVER_AUTHENTICATION"
    assert redis["redis_configs"] == {"maxmemory-policy": "${local.redis_maxmemory_policy}"}
    assert locals_()["redis_maxmemory_policy"] == "allkeys-lru"
    assert redis["customer_managed_key"] == "${var.redis_kms_key}"


def test_redis_credentials_reach_the_consumer_as_mounted_secret_files() -> None:
    """The AUTH string and the server CA go to Secret Manager and are mounted as files whose
    paths the consumer's settings name; the URL carries no password and speaks TLS."""
    versions = resources("google_secret_manager_secret_version")
    assert versions["redis_password"]["secret_data"] == (
        "${google_redis_instance.cache.auth_string}")
    assert "server_ca_certs" in versions["redis_ca"]["secret_data"]
    redis_env = locals_()["redis_env"]
    assert re.search(r'REDIS_URL = "rediss://\$\{google_redis_instance\.cache\.host\}:', redis_env)
    assert "REDIS_SPANNER_REDIS_CA_FILE = local.redis_ca_file" in redis_env
    assert "REDIS_SPANNER_REDIS_PASSWORD_FILE = local.redis_password_file" in redis_env
    assert "auth_string" not in redis_env
    secrets = locals_()["redis_secrets"]
    assert {s["file"] for s in secrets.values()} == {"${local.redis_ca_file}",
                                                     "${local.redis_password_file}"}
    [template] = resource("google_cloud_run_v2_service", "service")["template"]
    [volumes] = [d["volumes"] for d in template["dynamic"] if "volumes" in d]
    assert volumes["for_each"].startswith("${each.value.redis ?")
    assert volumes["content"][0]["secret"][0]["items"][0]["version"] == "latest"
    mounts = [d["volume_mounts"] for d in container()["dynamic"] if "volume_mounts" in d]
    assert mounts and mounts[0]["content"][0]["mount_path"] == (
        "${dirname(volume_mounts.value.file)}")
    for role in ("worker", "push"):
        assert services()[role]["redis"] is True and "local.redis_env" in services()[role]["env"]
    assert services()["relay"]["redis"] is False


def test_only_the_consumer_reads_the_redis_secrets() -> None:
    accessors = [body for _, role, body in iam_members()
                 if role == "roles/secretmanager.secretAccessor"]
    assert [a["member"] for a in accessors] == [
        "serviceAccount:${google_service_account.consumer.email}"]


# --- Spanner and least privilege -------------------------------------------------------------

def _grants(role_local: str) -> dict[str, set[str]]:
    """table -> privileges granted to the database role in ``role_local``."""
    found: dict[str, set[str]] = {}
    for statement in locals_()["access_ddl"]:
        m = re.fullmatch(r"GRANT (.+) ON TABLE (.+) TO ROLE \$\{local\.(\w+)\}", statement)
        if m and m.group(3) == role_local:
            for table in m.group(2).split(", "):
                found.setdefault(table, set()).update(p.strip() for p in m.group(1).split(","))
    return found


def test_relay_role_reaches_only_the_outbox_tables() -> None:
    """The relay's database role reads and deletes outbox rows, moves poison rows to the
    quarantine and keeps its leases, and has no privilege on any other table."""
    assert _grants("relay_role") == {
        "Outbox": {"SELECT", "DELETE"},
        "OutboxQuarantine": {"INSERT", "UPDATE"},  # INSERT OR UPDATE
        "OutboxLease": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "OutboxRelay": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    }
    schema_tables = set(re.findall(r"CREATE TABLE (\w+)", SCHEMA.read_text()))
    assert set(_grants("relay_role")) <= schema_tables


def test_consumer_role_reads_what_its_catalog_needs() -> None:
    """The consumer's role only SELECTs, exactly the tables a deployment names for its catalog
    (no default: the database holds no demo table); the description names the demo's."""
    grant = next(s for s in locals_()["access_ddl"] if s.endswith("${local.consumer_role}")
                 and s.startswith("GRANT"))
    assert grant == "GRANT SELECT ON TABLE ${join(\", \", var.consumer_tables)} TO ROLE " \
                    "${local.consumer_role}"
    catalog_tables = {t.entity for t in DEMO} | {tr.table for t in DEMO for tr in t.triggers}
    tables = variables()["consumer_tables"]
    assert "default" not in tables
    assert all(name in tables["description"] for name in catalog_tables)
    schema_tables = set(re.findall(r"CREATE TABLE (\w+)", SCHEMA.read_text()))
    assert schema_tables == {"Outbox", "OutboxLease", "OutboxRelay", "OutboxQuarantine",
                             "AuditLog"}


def test_spanner_access_is_fine_grained_only() -> None:
    """No identity holds a database-wide Spanner role: each may use fine-grained access and
    act as its own database role, named in the IAM condition, and runs with that role set."""
    spanner_roles = {role for rtype, role, _ in iam_members() if "spanner" in rtype}
    assert spanner_roles == {"roles/spanner.fineGrainedAccessUser",
                             "roles/spanner.databaseRoleUser"}
    role_user = resource("google_spanner_database_iam_member", "database_role")
    [condition] = role_user["condition"]
    assert condition["expression"].endswith(
        'resource.name.endsWith(\\"/databaseRoles/${each.value.role}\\")')
    assert 'resource.type == \\"spanner.googleapis.com/DatabaseRole\\"' in condition["expression"]
    roles = locals_()["database_roles"]
    assert {k: v["role"] for k, v in roles.items()} == {
        "relay": "${local.relay_role}", "consumer": "${local.consumer_role}"}
    assert "REDIS_SPANNER_SPANNER_DATABASE_ROLE = local.relay_role" in services()["relay"]["env"]
    for role in ("worker", "push"):
        assert "REDIS_SPANNER_SPANNER_DATABASE_ROLE = local.consumer_role" in (
            services()[role]["env"])
    ddl = resource("google_spanner_database", "main")["ddl"]
    assert ddl == "${concat(local.ddl, local.access_ddl, var.extra_ddl)}"


def test_no_broad_roles_anywhere() -> None:
    """Nothing is granted owner, editor, admin or a database-wide Spanner role; the relay
    publishes only to the events topic."""
    for _, role, _body in iam_members():
        assert not re.search(r"owner|editor|admin|databaseUser|databaseReader", role), role
    relay_grants = {(rtype, role) for rtype, role, body in iam_members()
                    if "google_service_account.relay" in str(body.get("member", ""))}
    assert relay_grants == {("google_pubsub_topic_iam_member", "roles/pubsub.publisher")}
    project_roles = {role for rtype, role, _ in iam_members()
                     if rtype == "google_project_iam_member"}
    assert project_roles == {"roles/monitoring.metricWriter"}
    publisher = resource("google_pubsub_topic_iam_member", "relay_publishes_events")
    assert publisher["topic"] == "${google_pubsub_topic.events.name}"


def test_database_is_protected_from_drops() -> None:
    """Spanner's drop protection and Terraform's deletion protection are both on by default."""
    database = resource("google_spanner_database", "main")
    assert database["enable_drop_protection"] == "${var.database_drop_protection}"
    assert database["deletion_protection"] == "${var.database_deletion_protection}"
    assert variables()["database_drop_protection"]["default"] is True
    assert variables()["database_deletion_protection"]["default"] is True


def test_customer_managed_keys_are_optional_and_granted_to_each_service_agent() -> None:
    """Topics, the database and Memorystore take an optional KMS key; each service agent gets
    encrypt/decrypt on its key only when one is set."""
    for name in ("events", "heal", "dead_letter"):
        assert resource("google_pubsub_topic", name)["kms_key_name"] == "${var.pubsub_kms_key}"
    [encryption] = resource("google_spanner_database", "main")["dynamic"]
    assert encryption["encryption_config"]["for_each"].startswith("${var.spanner_kms_key == null")
    keys = resources("google_kms_crypto_key_iam_member")
    assert {name: (body["member"], body["count"]) for name, body in keys.items()} == {
        "pubsub_uses_key": ("${local.pubsub_service_agent}",
                            "${var.pubsub_kms_key == null ? 0 : 1}"),
        "spanner_uses_key": ("${local.spanner_service_agent}",
                             "${var.spanner_kms_key == null ? 0 : 1}"),
        "redis_uses_key": ("${local.redis_service_agent}",
                           "${var.redis_kms_key == null ? 0 : 1}"),
    }
    for name in ("pubsub_kms_key", "spanner_kms_key", "redis_kms_key"):
        assert variables()[name]["default"] is None


# --- Names, settings and documentation --------------------------------------------------------

def test_names_default_to_the_settings_defaults() -> None:
    """The resources Terraform creates are the ones the Python side finds without config."""
    defaults = Settings.model_fields
    for name in ("instance", "database", "topic", "subscription", "dead_letter_topic",
                 "dead_letter_subscription"):
        assert variables()[name]["default"] == defaults[name].default, name


def test_every_environment_name_is_a_setting() -> None:
    """Each variable Terraform sets in a container is read by the settings (or is one of the
    Redis connection settings), so a typo can't silently configure nothing."""
    known = {f"REDIS_SPANNER_{name.upper()}" for name in Settings.model_fields}
    known |= {str(f.validation_alias) for f in Settings.model_fields.values()
              if f.validation_alias}
    used = set(re.findall(r"\b((?:REDIS_SPANNER_[A-Z_]+|GOOGLE_CLOUD_PROJECT|REDIS_URL)) =",
                          text()))
    assert used and used - known <= REDIS_SETTINGS - {"REDIS_URL"}, used - known


def test_variables_and_outputs_are_documented() -> None:
    """Every variable and output says what it is."""
    undocumented = [name for kind in ("variable", "output") for block in blocks(kind)
                    for name, body in block.items() if not body.get("description")]
    assert undocumented == []


def test_terraform_files_are_in_terraform_fmt_canonical_form() -> None:
    """`terraform fmt -check` passes over infra/terraform (it needs no provider or registry,
    unlike `terraform validate`, so it runs wherever the terraform binary is)."""
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform is not on PATH")
    done = subprocess.run([binary, "fmt", "-check", "-recursive", "-diff"], cwd=TERRAFORM,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
