# The consumer worker on Cloud Run: `redis-spanner worker` pulls the subscription and applies
# events to Redis. A pull worker needs CPU outside requests and at least one running instance;
# its metrics port doubles as the port Cloud Run probes.
locals {
  worker_port = 8080
  worker_env = {
    GOOGLE_CLOUD_PROJECT                   = var.project
    REDIS_SPANNER_INSTANCE                 = var.instance
    REDIS_SPANNER_DATABASE                 = var.database
    REDIS_SPANNER_TOPIC                    = var.topic
    REDIS_SPANNER_SUBSCRIPTION             = var.subscription
    REDIS_SPANNER_DEAD_LETTER_TOPIC        = var.dead_letter_topic
    REDIS_SPANNER_DEAD_LETTER_SUBSCRIPTION = var.dead_letter_subscription
    REDIS_SPANNER_MAX_DELIVERY_ATTEMPTS    = tostring(local.sub.max_delivery_attempts)
  }
}

resource "google_cloud_run_v2_service" "worker" {
  count = var.deploy_worker ? 1 : 0

  name                = var.worker_service_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = false

  template {
    service_account = google_service_account.consumer.email

    scaling {
      min_instance_count = var.worker_min_instances
      max_instance_count = var.worker_max_instances
    }

    dynamic "vpc_access" {
      for_each = var.vpc_subnetwork == null ? [] : [var.vpc_subnetwork]
      content {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = var.vpc_network
          subnetwork = vpc_access.value
        }
      }
    }

    containers {
      image   = var.worker_image
      command = ["redis-spanner"]
      args    = ["worker", "--metrics-port", tostring(local.worker_port)]

      ports {
        container_port = local.worker_port
      }

      resources {
        cpu_idle = false
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }

      dynamic "env" {
        for_each = local.worker_env
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name = "REDIS_URL"
        value_source {
          secret_key_ref {
            secret  = var.redis_url_secret
            version = var.redis_url_secret_version
          }
        }
      }

      startup_probe {
        tcp_socket {
          port = local.worker_port
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.worker_image != "" && var.redis_url_secret != ""
      error_message = "deploy_worker needs worker_image and redis_url_secret."
    }
  }

  depends_on = [
    google_pubsub_subscription_iam_member.consumer_pulls,
    google_pubsub_topic_iam_member.consumer_publishes_dead_letters,
    google_spanner_database_iam_member.consumer_database_reader,
    google_secret_manager_secret_iam_member.consumer_reads_redis_url,
  ]
}
