resource "google_pubsub_topic" "events" {
  name                       = var.topic
  message_retention_duration = "${local.pipeline.topic.message_retention_seconds}s"

  depends_on = [google_project_service.apis]
}

# Where Pub/Sub forwards what it gave up delivering: never applied, so the worker applies it once
# Redis and Spanner answer again. Names follow the worker's defaults (<topic>-heal,
# <subscription>-heal).
resource "google_pubsub_topic" "heal" {
  name                       = "${var.topic}-heal"
  message_retention_duration = "${local.pipeline.dead_letter_topic.message_retention_seconds}s"

  depends_on = [google_project_service.apis]
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

resource "google_pubsub_topic" "dead_letter" {
  name                       = var.dead_letter_topic
  message_retention_duration = "${local.pipeline.dead_letter_topic.message_retention_seconds}s"

  depends_on = [google_project_service.apis]
}

# The consumer's subscription: redelivery with exponential backoff, then the heal topic.
# No ordering: the consumer orders by versions, and ordering plus dead-lettering breaks pulls on
# the emulator, so the declaration refuses it everywhere.
resource "google_pubsub_subscription" "consumer" {
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
# acknowledges on the source subscription.
resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  topic  = google_pubsub_topic.heal.name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acks_dead_letters" {
  subscription = google_pubsub_subscription.consumer.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
