# The pipeline's processes on Cloud Run, all from one image (infra/Dockerfile):
# - relay:  `redis-spanner relay`, outbox rows to the events topic, as the relay's account;
# - worker: `redis-spanner worker`, the pull subscription to Redis (transports has "pull");
# - push:   `redis-spanner serve`, the push subscription to Redis (transports has "push").
# Each listens on $PORT and Cloud Run probes GET /healthz there: the worker's fails when a pull
# loop has died or Redis is unreachable, the push server's answers while it serves, and the
# relay's port is its metrics port, which answers every path while the process runs.
locals {
  port = 8080

  names_env = {
    GOOGLE_CLOUD_PROJECT                   = var.project
    REDIS_SPANNER_INSTANCE                 = var.instance
    REDIS_SPANNER_DATABASE                 = var.database
    REDIS_SPANNER_TOPIC                    = var.topic
    REDIS_SPANNER_SUBSCRIPTION             = var.subscription
    REDIS_SPANNER_DEAD_LETTER_TOPIC        = var.dead_letter_topic
    REDIS_SPANNER_DEAD_LETTER_SUBSCRIPTION = var.dead_letter_subscription
    REDIS_SPANNER_MAX_DELIVERY_ATTEMPTS    = tostring(local.sub.max_delivery_attempts)
  }

  # Memorystore over TLS with AUTH: the address is no secret, the password and CA are files.
  redis_env = merge({
    REDIS_URL                         = "rediss://${google_redis_instance.cache.host}:${google_redis_instance.cache.port}/0"
    REDIS_SPANNER_REDIS_CA_FILE       = local.redis_ca_file
    REDIS_SPANNER_REDIS_PASSWORD_FILE = local.redis_password_file
  }, var.redis_username == "" ? {} : { REDIS_SPANNER_REDIS_USERNAME = var.redis_username })

  push_audience = "redis-spanner-push/${var.project}/${var.push_service_name}"

  services = {
    relay = {
      name     = var.relay_service_name
      args     = ["relay", "--metrics-port", tostring(local.port)]
      account  = google_service_account.relay.email
      min      = var.relay_instances
      max      = var.relay_instances
      cpu_idle = false
      redis    = false
      env = merge(local.names_env, {
        REDIS_SPANNER_SPANNER_DATABASE_ROLE = local.relay_role
      })
      audiences = []
    }
    worker = {
      name     = var.worker_service_name
      args     = ["worker"]
      account  = google_service_account.consumer.email
      min      = var.worker_min_instances
      max      = var.worker_max_instances
      cpu_idle = false # a pull worker works outside requests
      redis    = true
      env = merge(local.names_env, local.redis_env, {
        REDIS_SPANNER_SPANNER_DATABASE_ROLE = local.consumer_role
      })
      audiences = []
    }
    push = {
      name     = var.push_service_name
      args     = ["serve"]
      account  = google_service_account.consumer.email
      min      = 0
      max      = var.push_max_instances
      cpu_idle = true
      redis    = true
      env = merge(local.names_env, local.redis_env, {
        REDIS_SPANNER_SUBSCRIPTION          = var.push_subscription
        REDIS_SPANNER_SPANNER_DATABASE_ROLE = local.consumer_role
        REDIS_SPANNER_PUSH_AUDIENCE         = local.push_audience
        REDIS_SPANNER_PUSH_SERVICE_ACCOUNT  = google_service_account.push.email
      })
      audiences = [local.push_audience]
    }
  }

  deployed = {
    for role, service in local.services : role => service
    if role == "relay" || contains(var.transports, role == "worker" ? "pull" : "push")
  }

  redis_secrets = {
    redis-ca       = { secret = google_secret_manager_secret.redis_ca.secret_id, file = local.redis_ca_file }
    redis-password = { secret = google_secret_manager_secret.redis_password.secret_id, file = local.redis_password_file }
  }
}

moved {
  from = google_cloud_run_v2_service.worker[0]
  to   = google_cloud_run_v2_service.service["worker"]
}

resource "google_cloud_run_v2_service" "service" {
  for_each = local.deployed

  name                = each.value.name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  custom_audiences    = each.value.audiences
  deletion_protection = false

  template {
    service_account = each.value.account

    scaling {
      min_instance_count = each.value.min
      max_instance_count = each.value.max
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = var.vpc_network
        subnetwork = var.vpc_subnetwork
      }
    }

    dynamic "volumes" {
      for_each = each.value.redis ? local.redis_secrets : {}
      content {
        name = volumes.key
        secret {
          secret       = volumes.value.secret
          default_mode = 292 # 0444: readable by the image's non-root user
          items {
            version = "latest"
            path    = basename(volumes.value.file)
          }
        }
      }
    }

    containers {
      image = var.image
      args  = each.value.args

      ports {
        container_port = local.port
      }

      resources {
        cpu_idle = each.value.cpu_idle
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }

      dynamic "env" {
        for_each = each.value.env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "volume_mounts" {
        for_each = each.value.redis ? local.redis_secrets : {}
        content {
          name       = volume_mounts.key
          mount_path = dirname(volume_mounts.value.file)
        }
      }

      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 5
        timeout_seconds       = 3
        failure_threshold     = 24
        http_get {
          path = "/healthz"
          port = local.port
        }
      }

      liveness_probe {
        period_seconds    = 15
        timeout_seconds   = 5
        failure_threshold = 4
        http_get {
          path = "/healthz"
          port = local.port
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.metric_writer,
    google_pubsub_topic_iam_member.relay_publishes_events,
    google_pubsub_topic_iam_member.consumer_publishes_dead_letters,
    google_pubsub_subscription_iam_member.consumer_pulls,
    google_spanner_database_iam_member.fine_grained_access,
    google_spanner_database_iam_member.database_role,
    google_secret_manager_secret_iam_member.consumer_reads_redis_secrets,
    google_secret_manager_secret_version.redis_ca,
    google_secret_manager_secret_version.redis_password,
  ]
}
