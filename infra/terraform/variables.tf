# Resource names default to the defaults of schemas/settings.py, so the Python side finds them
# without configuration. Policies (retention, retries, dead-lettering, Spanner capacity) are not
# variables: they come from ../pipeline.json, the one declaration `redis-spanner provision` reads.

variable "project" {
  description = "GCP project id (GOOGLE_CLOUD_PROJECT)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services and Memorystore. Keep it near spanner.instance_config in pipeline.json."
  type        = string
  default     = "us-central1"
}

variable "image" {
  description = "The redis-spanner container image (built from infra/Dockerfile); the relay, the worker and the push server all run it."
  type        = string

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.image))
    error_message = "Name the image by digest (REPO/redis-spanner@sha256:...), so every service runs the same bytes."
  }
}

variable "transports" {
  description = "How the consumer receives events: \"pull\" (the worker, on a pull subscription), \"push\" (the push server, behind an authenticated push subscription), or both."
  type        = set(string)
  default     = ["pull"]

  validation {
    condition     = length(var.transports) > 0 && alltrue([for t in var.transports : contains(["pull", "push"], t)])
    error_message = "transports takes \"pull\", \"push\" or both."
  }
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
  description = "Pull subscription id, read by the worker (REDIS_SPANNER_SUBSCRIPTION)."
  type        = string
  default     = "cache-events-consumer"
}

variable "push_subscription" {
  description = "Push subscription id, delivering to the push server (its REDIS_SPANNER_SUBSCRIPTION)."
  type        = string
  default     = "cache-events-push"
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
  description = "Terraform refuses to destroy or replace the Spanner database. Set false only to tear down on purpose."
  type        = bool
  default     = true
}

variable "database_drop_protection" {
  description = "Spanner's own drop protection: the database cannot be dropped by any client while it is on."
  type        = bool
  default     = true
}

variable "extra_ddl" {
  description = "Schema statements applied after schema.sql and the access-control statements. After the first apply, add new tables here (Terraform applies appended statements in place)."
  type        = list(string)
  default     = []
}

variable "consumer_tables" {
  description = "Tables the consumer reads to rewarm and verify: those of its catalog (REDIS_SPANNER_CATALOG), which must exist when the grant is applied. The demo catalog's are Accounts, Teams, Members."
  type        = list(string)

  validation {
    condition     = length(var.consumer_tables) > 0
    error_message = "consumer_tables: name the tables of the consumer's catalog."
  }
}

variable "relay_service_account_id" {
  description = "Account id of the relay's service account."
  type        = string
  default     = "redis-spanner-relay"
}

variable "consumer_service_account_id" {
  description = "Account id of the consumer's service account (the worker and the push server)."
  type        = string
  default     = "redis-spanner-consumer"
}

variable "push_service_account_id" {
  description = "Account id of the push identity: Pub/Sub signs each push's OIDC token as this account, and it alone may invoke the push server."
  type        = string
  default     = "redis-spanner-push"
}

variable "relay_service_name" {
  description = "Cloud Run service name of the relay."
  type        = string
  default     = "redis-spanner-relay"
}

variable "worker_service_name" {
  description = "Cloud Run service name of the pull worker."
  type        = string
  default     = "redis-spanner-worker"
}

variable "push_service_name" {
  description = "Cloud Run service name of the push server."
  type        = string
  default     = "redis-spanner-push"
}

variable "relay_instances" {
  description = "Relay instances; each leases a fair share of the outbox shards. At least one must run."
  type        = number
  default     = 2

  validation {
    condition     = var.relay_instances >= 1
    error_message = "The outbox drains only while a relay runs: keep at least one."
  }
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

variable "push_max_instances" {
  description = "Upper bound of push server instances (it scales to zero between pushes)."
  type        = number
  default     = 10
}

variable "vpc_network" {
  description = "VPC network (name or self link) that Memorystore joins and the services reach it through (Direct VPC egress)."
  type        = string
}

variable "vpc_subnetwork" {
  description = "Subnetwork in var.region for the services' Direct VPC egress."
  type        = string
}

variable "redis_instance" {
  description = "Memorystore for Redis instance id."
  type        = string
  default     = "redis-spanner-cache"
}

variable "redis_memory_gb" {
  description = "Memorystore capacity in GB."
  type        = number
  default     = 1
}

variable "redis_version" {
  description = "Memorystore Redis version."
  type        = string
  default     = "REDIS_7_2"
}

variable "redis_username" {
  description = "Redis ACL username (REDIS_SPANNER_REDIS_USERNAME); empty for Memorystore's AUTH, which has no user name."
  type        = string
  default     = ""
}

variable "pubsub_kms_key" {
  description = "Cloud KMS key (projects/.../cryptoKeys/...) encrypting both topics; null: Google-managed keys."
  type        = string
  default     = null
}

variable "spanner_kms_key" {
  description = "Cloud KMS key encrypting the Spanner database, in the instance's region; null: Google-managed keys."
  type        = string
  default     = null
}

variable "redis_kms_key" {
  description = "Cloud KMS key encrypting Memorystore's data at rest; null: Google-managed keys."
  type        = string
  default     = null
}
