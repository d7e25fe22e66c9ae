# The cache: Memorystore for Redis, standard tier (a primary and a replica in another zone, with
# automatic failover), AUTH on, TLS in transit. Its AUTH string and server CA go to Secret
# Manager and reach the consumer's containers as files, never as plain environment values.
#
# maxmemory-policy allkeys-lru: tombstones carry TTLs, so a volatile-* policy would evict them
# before untouched values and let a stale fill through. Under memory pressure every key is an
# eviction candidate, and a missing key is only a cache miss.
locals {
  redis_maxmemory_policy = "allkeys-lru"
  secrets_dir            = "/secrets"
  redis_ca_file          = "${local.secrets_dir}/redis-ca/ca.pem"
  redis_password_file    = "${local.secrets_dir}/redis-password/password"
}

resource "google_redis_instance" "cache" {
  name                    = var.redis_instance
  region                  = var.region
  tier                    = "STANDARD_HA"
  replica_count           = 1
  memory_size_gb          = var.redis_memory_gb
  redis_version           = var.redis_version
  authorized_network      = var.vpc_network
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"
  customer_managed_key    = var.redis_kms_key

  redis_configs = {
    "maxmemory-policy" = local.redis_maxmemory_policy
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "SUNDAY"
      start_time {
        hours   = 3
        minutes = 0
      }
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.redis_uses_key]
}

resource "google_secret_manager_secret" "redis_password" {
  secret_id = "${var.redis_instance}-auth"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# The AUTH string is in Terraform's state as well (Memorystore returns it): keep the state in a
# protected backend. Rotate it with the Memorystore procedure (README), then add a version here.
resource "google_secret_manager_secret_version" "redis_password" {
  secret      = google_secret_manager_secret.redis_password.id
  secret_data = google_redis_instance.cache.auth_string
}

resource "google_secret_manager_secret" "redis_ca" {
  secret_id = "${var.redis_instance}-server-ca"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "redis_ca" {
  secret      = google_secret_manager_secret.redis_ca.id
  secret_data = join("\n", google_redis_instance.cache.server_ca_certs[*].cert)
}
