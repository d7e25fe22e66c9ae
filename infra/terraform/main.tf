# Policies come from the one declaration, ../pipeline.json; the schema from ../spanner/schema.sql.
locals {
  pipeline = jsondecode(file("${path.module}/../pipeline.json"))
  sub      = local.pipeline.subscription
  hold     = local.pipeline.dead_letter_subscription

  # schema.sql: drop comment lines, split on ";". Keep the schema within what this can read
  # (no ";" or "--" inside strings): tests/unit/test_ddl.py checks it agrees with the parser.
  ddl_lines = [
    for line in split("\n", file("${path.module}/../${local.pipeline.spanner.ddl_file}")) :
    line if !startswith(trimspace(line), "--")
  ]
  ddl = [for s in split(";", join("\n", local.ddl_lines)) : trimspace(s) if trimspace(s) != ""]

  pull_enabled = contains(var.transports, "pull")
  push_enabled = contains(var.transports, "push")

  project_number        = data.google_project.this.number
  pubsub_service_agent  = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  spanner_service_agent = "serviceAccount:service-${local.project_number}@gcp-sa-spanner.iam.gserviceaccount.com"
  redis_service_agent   = "serviceAccount:service-${local.project_number}@cloud-redis.iam.gserviceaccount.com"
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_project_service" "apis" {
  for_each = toset([
    "compute.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "spanner.googleapis.com",
  ])

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}
