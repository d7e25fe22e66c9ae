output "topic" {
  description = "REDIS_SPANNER_TOPIC's resource path."
  value       = google_pubsub_topic.events.id
}

output "subscription" {
  description = "The worker's pull subscription (null unless transports has \"pull\")."
  value       = one(google_pubsub_subscription.consumer[*].id)
}

output "push_subscription" {
  description = "The push subscription (null unless transports has \"push\")."
  value       = one(google_pubsub_subscription.push[*].id)
}

output "dead_letter_topic" {
  description = "REDIS_SPANNER_DEAD_LETTER_TOPIC's resource path."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Where dead letters wait for `redis-spanner dlq list` and `dlq replay`."
  value       = google_pubsub_subscription.dead_letter_hold.id
}

output "spanner_database" {
  description = "The Spanner database's resource path."
  value       = "projects/${var.project}/instances/${google_spanner_instance.main.name}/databases/${google_spanner_database.main.name}"
}

output "spanner_database_roles" {
  description = "Fine-grained access-control roles: set REDIS_SPANNER_SPANNER_DATABASE_ROLE to the relay's or the consumer's."
  value       = { relay = local.relay_role, consumer = local.consumer_role }
}

output "relay_service_account" {
  description = "The relay's identity (publishes events, acts as the relay database role)."
  value       = google_service_account.relay.email
}

output "consumer_service_account" {
  description = "The worker's and push server's identity."
  value       = google_service_account.consumer.email
}

output "push_service_account" {
  description = "The push identity: the email REDIS_SPANNER_PUSH_SERVICE_ACCOUNT expects in push tokens."
  value       = google_service_account.push.email
}

output "push_audience" {
  description = "REDIS_SPANNER_PUSH_AUDIENCE: the audience of the push tokens."
  value       = local.push_audience
}

output "pubsub_service_agent" {
  description = "Granted publisher on the heal topic, subscriber on each subscription, and token creator on the push identity."
  value       = local.pubsub_service_agent
}

output "service_uris" {
  description = "URI of each Cloud Run service, by role (relay, worker, push)."
  value       = { for role, service in google_cloud_run_v2_service.service : role => service.uri }
}

output "redis_host" {
  description = "Memorystore's address (TLS, port in redis_port)."
  value       = google_redis_instance.cache.host
}

output "redis_port" {
  description = "Memorystore's TLS port."
  value       = google_redis_instance.cache.port
}

output "redis_secrets" {
  description = "Secret Manager secrets with Memorystore's AUTH string and server CA, mounted as files in the consumer's containers."
  value = {
    password = google_secret_manager_secret.redis_password.id
    ca       = google_secret_manager_secret.redis_ca.id
  }
}

output "settings_env" {
  description = "The environment that points redis-spanner at these resources (the worker's)."
  value       = local.services.worker.env
}
