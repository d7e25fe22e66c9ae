# Resource names default to the defaults of schemas/settings.py, so the Python side finds them
# without configuration. Policies (retention, retries, dead-lettering, Spanner capacity) are not
# variables: they come from ../pipeline.json, the one declaration `redis-spanner provision` reads.

variable "project" {
  description = "GCP project id (GOOGLE_CLOUD_PROJECT)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run worker. Keep it near spanner.instance_config in pipeline.json."
  type        = string
  default     = "us-central1"
}

variable "instance" {
  description = "Spanner instance id (REDIS_SPANNER_INSTANCE)."
  type        = string
  default     = "redis-spanner"
}

variable "database" {
  description = "Spanner database id (REDIS_SPANNER_DATABASE)."
  type        = string
  default     = "cache"
}

variable "topic" {
  description = "Events topic id (REDIS_SPANNER_TOPIC)."
  type        = string
  default     = "cache-events"
}

variable "subscription" {
  description = "Consumer subscription id (REDIS_SPANNER_SUBSCRIPTION)."
  type        = string
  default     = "cache-events-consumer"
}

variable "dead_letter_topic" {
  description = "Dead-letter topic id (REDIS_SPANNER_DEAD_LETTER_TOPIC)."
  type        = string
  default     = "cache-events-dead-letter"
}

variable "dead_letter_subscription" {
  description = "Subscription that holds dead letters for inspection (REDIS_SPANNER_DEAD_LETTER_SUBSCRIPTION)."
  type        = string
  default     = "cache-events-dead-letter-hold"
}

variable "database_deletion_protection" {
  description = "Refuse to destroy or replace the Spanner database. Set false only to tear down on purpose."
  type        = bool
  default     = true
}

variable "relay_service_account_id" {
  description = "Account id of the relay's service account (runs where the writers run)."
  type        = string
  default     = "redis-spanner-relay"
}

variable "consumer_service_account_id" {
  description = "Account id of the consumer worker's service account."
  type        = string
  default     = "redis-spanner-consumer"
}

variable "deploy_worker" {
  description = "Deploy the consumer worker on Cloud Run (needs worker_image and redis_url_secret)."
  type        = bool
  default     = false
}

variable "worker_image" {
  description = "Container image with the redis-spanner package installed (its CLI on PATH)."
  type        = string
  default     = ""
}

variable "worker_service_name" {
  description = "Cloud Run service name of the consumer worker."
  type        = string
  default     = "redis-spanner-worker"
}

variable "worker_min_instances" {
  description = "Always-running worker instances; a pull worker needs at least one."
  type        = number
  default     = 1

  validation {
    condition     = var.worker_min_instances >= 1
    error_message = "A pull worker only pulls while it runs: keep at least one instance."
  }
}

variable "worker_max_instances" {
  description = "Upper bound of worker instances."
  type        = number
  default     = 4
}

variable "redis_url_secret" {
  description = "Secret Manager secret id (in var.project) holding REDIS_URL, e.g. redis://10.0.0.3:6379/0."
  type        = string
  default     = ""
}

variable "redis_url_secret_version" {
  description = "Version of redis_url_secret the worker reads."
  type        = string
  default     = "latest"
}

variable "vpc_network" {
  description = "VPC network for Direct VPC egress to Memorystore (null: no VPC access)."
  type        = string
  default     = null
}

variable "vpc_subnetwork" {
  description = "Subnetwork for Direct VPC egress (null: no VPC access)."
  type        = string
  default     = null
}
