# Least privilege: each identity gets the roles its code uses, on the one resource it uses.

resource "google_service_account" "relay" {
  account_id   = var.relay_service_account_id
  display_name = "redis-spanner relay: outbox to Pub/Sub"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "consumer" {
  account_id   = var.consumer_service_account_id
  display_name = "redis-spanner consumer: Pub/Sub to Redis (worker and push server)"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "push" {
  account_id   = var.push_service_account_id
  display_name = "redis-spanner push identity: signs pushes, invokes the push server"

  depends_on = [google_project_service.apis]
}

# Spanner: fine-grained access control only. fineGrainedAccessUser lets an account use database
# roles at all; databaseRoleUser, conditioned on one role's name, lets it act as that role
# alone. Neither grants any table by itself: the role's GRANTs in spanner.tf do.
locals {
  database_roles = {
    relay    = { member = "serviceAccount:${google_service_account.relay.email}", role = local.relay_role }
    consumer = { member = "serviceAccount:${google_service_account.consumer.email}", role = local.consumer_role }
  }
}

resource "google_spanner_database_iam_member" "fine_grained_access" {
  for_each = local.database_roles

  instance = google_spanner_instance.main.name
  database = google_spanner_database.main.name
  role     = "roles/spanner.fineGrainedAccessUser"
  member   = each.value.member
}

resource "google_spanner_database_iam_member" "database_role" {
  for_each = local.database_roles

  instance = google_spanner_instance.main.name
  database = google_spanner_database.main.name
  role     = "roles/spanner.databaseRoleUser"
  member   = each.value.member

  condition {
    title       = "only-${each.value.role}"
    description = "Act as the ${each.value.role} database role and no other."
    expression  = "resource.type == \"spanner.googleapis.com/DatabaseRole\" && resource.name.endsWith(\"/databaseRoles/${each.value.role}\")"
  }
}

resource "google_pubsub_topic_iam_member" "relay_publishes_events" {
  topic  = google_pubsub_topic.events.name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.relay.email}"
}

# The consumer pulls its subscription (push needs no Pub/Sub role: Pub/Sub calls it) and
# publishes permanent failures straight to the dead-letter topic with their story.
resource "google_pubsub_subscription_iam_member" "consumer_pulls" {
  count = local.pull_enabled ? 1 : 0

  subscription = google_pubsub_subscription.consumer[0].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.consumer.email}"
}

moved {
  from = google_pubsub_subscription_iam_member.consumer_pulls
  to   = google_pubsub_subscription_iam_member.consumer_pulls[0]
}

# The worker and the push server both drain the heal subscription, and republish to the heal
# topic a letter that failed a heal attempt on its own, with its count.
resource "google_pubsub_subscription_iam_member" "consumer_pulls_heal" {
  subscription = google_pubsub_subscription.heal.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.consumer.email}"
}

resource "google_pubsub_topic_iam_member" "consumer_republishes_heal" {
  topic  = google_pubsub_topic.heal.name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.consumer.email}"
}

resource "google_pubsub_topic_iam_member" "consumer_publishes_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.consumer.email}"
}

# Only the push identity may invoke the push server.
resource "google_cloud_run_v2_service_iam_member" "push_invokes" {
  count = local.push_enabled ? 1 : 0

  name     = google_cloud_run_v2_service.service["push"].name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"
}

# The consumer reads the Redis credentials it mounts as files.
resource "google_secret_manager_secret_iam_member" "consumer_reads_redis_secrets" {
  for_each = {
    ca       = google_secret_manager_secret.redis_ca.secret_id
    password = google_secret_manager_secret.redis_password.secret_id
  }

  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.consumer.email}"
}

# The Spanner client exports its built-in client metrics to Cloud Monitoring.
resource "google_project_iam_member" "metric_writer" {
  for_each = {
    relay    = "serviceAccount:${google_service_account.relay.email}"
    consumer = "serviceAccount:${google_service_account.consumer.email}"
  }

  project = var.project
  role    = "roles/monitoring.metricWriter"
  member  = each.value
}

# Customer-managed keys: each service agent may use the key that encrypts its data.
resource "google_kms_crypto_key_iam_member" "pubsub_uses_key" {
  count = var.pubsub_kms_key == null ? 0 : 1

  crypto_key_id = var.pubsub_kms_key
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.pubsub_service_agent
}

resource "google_kms_crypto_key_iam_member" "spanner_uses_key" {
  count = var.spanner_kms_key == null ? 0 : 1

  crypto_key_id = var.spanner_kms_key
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.spanner_service_agent
}

resource "google_kms_crypto_key_iam_member" "redis_uses_key" {
  count = var.redis_kms_key == null ? 0 : 1

  crypto_key_id = var.redis_kms_key
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.redis_service_agent
}
