output "topic" {
  description = "REDIS_SPANNER_TOPIC's resource path."
  value       = google_pubsub_topic.events.id
}

output "subscription" {
  value = google_pubsub_subscription.consumer.id
}

output "dead_letter_topic" {
  value = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  value = google_pubsub_subscription.dead_letter_hold.id
}

output "spanner_database" {
  value = "projects/${var.project}/instances/${google_spanner_instance.main.name}/databases/${google_spanner_database.main.name}"
}

output "relay_service_account" {
  description = "Run the relay (inside the writer services) as this account."
  value       = google_service_account.relay.email
}

output "consumer_service_account" {
  value = google_service_account.consumer.email
}

output "pubsub_service_agent" {
  description = "Granted publisher on the heal topic and subscriber on the subscription."
  value       = local.pubsub_service_agent
}

output "worker_uri" {
  value = var.deploy_worker ? google_cloud_run_v2_service.worker[0].uri : null
}

output "settings_env" {
  description = "The environment that points redis-spanner at these resources."
  value       = local.worker_env
}
