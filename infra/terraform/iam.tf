# Least privilege: each process gets the roles its code uses, on the one resource it uses.

resource "google_service_account" "relay" {
  account_id   = var.relay_service_account_id
  display_name = "redis-spanner relay: outbox to Pub/Sub"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "consumer" {
  account_id   = var.consumer_service_account_id
  display_name = "redis-spanner consumer: Pub/Sub to Redis"

  depends_on = [google_project_service.apis]
}

# The relay reads and deletes outbox rows and holds shard leases: read-write on the database.
resource "google_spanner_database_iam_member" "relay_database_user" {
  instance = google_spanner_instance.main.name
  database = google_spanner_database.main.name
  role     = "roles/spanner.databaseUser"
  member   = "serviceAccount:${google_service_account.relay.email}"
}

resource "google_pubsub_topic_iam_member" "relay_publishes_events" {
  topic  = google_pubsub_topic.events.name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.relay.email}"
}

# The consumer only reads Spanner (rewarm), pulls its subscription, and publishes permanent
# failures straight to the dead-letter topic with their story as attributes.
resource "google_spanner_database_iam_member" "consumer_database_reader" {
  instance = google_spanner_instance.main.name
  database = google_spanner_database.main.name
  role     = "roles/spanner.databaseReader"
  member   = "serviceAccount:${google_service_account.consumer.email}"
}

resource "google_pubsub_subscription_iam_member" "consumer_pulls" {
  subscription = google_pubsub_subscription.consumer.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.consumer.email}"
}

resource "google_pubsub_subscription_iam_member" "consumer_pulls_heal" {
  subscription = google_pubsub_subscription.heal.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.consumer.email}"
}

resource "google_pubsub_topic_iam_member" "consumer_publishes_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.consumer.email}"
}

resource "google_secret_manager_secret_iam_member" "consumer_reads_redis_url" {
  count = var.deploy_worker ? 1 : 0

  secret_id = var.redis_url_secret
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
