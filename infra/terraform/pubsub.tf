resource "google_pubsub_topic" "events" {
  name                       = var.topic
  message_retention_duration = "${local.pipeline.topic.message_retention_seconds}s"
  kms_key_name               = var.pubsub_kms_key

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.pubsub_uses_key]
}

resource "google_pubsub_topic" "dead_letter" {
  name                       = var.dead_letter_topic
  message_retention_duration = "${local.pipeline.dead_letter_topic.message_retention_seconds}s"
  kms_key_name               = var.pubsub_kms_key

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.pubsub_uses_key]
}

# Where Pub/Sub forwards what it gave up delivering: never applied, so the worker (and the push
# server) apply it once Redis and Spanner answer again; a letter that keeps failing on its own
# goes to the dead-letter topic after REDIS_SPANNER_HEAL_MAX_ATTEMPTS (the consumers count it,
# so the heal subscription has no dead-letter policy). Names follow the consumer's defaults
# (<topic>-heal, <subscription>-heal).
resource "google_pubsub_topic" "heal" {
  name                       = "${var.topic}-heal"
  message_retention_duration = "${local.pipeline.dead_letter_topic.message_retention_seconds}s"
  kms_key_name               = var.pubsub_kms_key

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.pubsub_uses_key]
}

resource "google_pubsub_subscription" "heal" {
  name                       = "${var.subscription}-heal"
  topic                      = google_pubsub_topic.heal.id
  ack_deadline_seconds       = local.hold.ack_deadline_seconds
  message_retention_duration = "${local.hold.message_retention_seconds}s"

  expiration_policy {
    ttl = ""
  }
}

moved {
  from = google_pubsub_subscription.consumer
  to   = google_pubsub_subscription.consumer[0]
}

# The worker's pull subscription: redelivery with exponential backoff, then the heal topic.
# No ordering: the consumer orders by versions, and ordering plus dead-lettering breaks
# pulls on the emulator, so the declaration refuses it everywhere.
resource "google_pubsub_subscription" "consumer" {
  count = local.pull_enabled ? 1 : 0

  name                       = var.subscription
  topic                      = google_pubsub_topic.events.id
  ack_deadline_seconds       = local.sub.ack_deadline_seconds
  message_retention_duration = "${local.sub.message_retention_seconds}s"
  enable_message_ordering    = false

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.heal.id
    max_delivery_attempts = local.sub.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "${local.sub.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${local.sub.retry_maximum_backoff_seconds}s"
  }

  expiration_policy {
    ttl = "" # never expires
  }

  lifecycle {
    precondition {
      condition     = !local.sub.enable_message_ordering
      error_message = "pipeline.json: subscription.enable_message_ordering must be false."
    }
  }
}

# The push server's subscription: the same policies, delivered as authenticated POSTs. Pub/Sub
# signs an OIDC token as the push identity for local.push_audience; the server verifies it
# (REDIS_SPANNER_PUSH_AUDIENCE, REDIS_SPANNER_PUSH_SERVICE_ACCOUNT) and Cloud Run lets only that
# identity invoke it.
resource "google_pubsub_subscription" "push" {
  count = local.push_enabled ? 1 : 0

  name                       = var.push_subscription
  topic                      = google_pubsub_topic.events.id
  ack_deadline_seconds       = local.sub.ack_deadline_seconds
  message_retention_duration = "${local.sub.message_retention_seconds}s"
  enable_message_ordering    = false

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.service["push"].uri}/push"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.push_audience
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.heal.id
    max_delivery_attempts = local.sub.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "${local.sub.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${local.sub.retry_maximum_backoff_seconds}s"
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invokes,
    google_service_account_iam_member.agent_signs_push_tokens,
  ]
}

# A dead-letter topic without a subscription keeps nothing: this one holds dead letters until a
# person inspects or replays them. It must never expire, however long no dead letter comes.
resource "google_pubsub_subscription" "dead_letter_hold" {
  name                       = var.dead_letter_subscription
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = local.hold.ack_deadline_seconds
  message_retention_duration = "${local.hold.message_retention_seconds}s"

  expiration_policy {
    ttl = ""
  }
}

# Forwarding is done by the Pub/Sub service agent: it publishes to the heal topic and
# acknowledges on each source subscription.
resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  topic  = google_pubsub_topic.heal.name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acks_dead_letters" {
  for_each = { for t, name in { pull = var.subscription, push = var.push_subscription } :
  t => name if contains(var.transports, t) }

  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent

  depends_on = [google_pubsub_subscription.consumer, google_pubsub_subscription.push]
}

moved {
  from = google_pubsub_subscription_iam_member.agent_acks_dead_letters
  to   = google_pubsub_subscription_iam_member.agent_acks_dead_letters["pull"]
}

# Pub/Sub mints the push tokens as the push identity.
resource "google_service_account_iam_member" "agent_signs_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
