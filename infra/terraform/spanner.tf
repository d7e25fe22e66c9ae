resource "google_spanner_instance" "main" {
  name             = var.instance
  config           = local.pipeline.spanner.instance_config
  display_name     = var.instance
  processing_units = local.pipeline.spanner.processing_units

  depends_on = [google_project_service.apis]
}

# Fine-grained access control: each process acts as a database role that holds only the
# privileges its code uses. The relay reads and deletes outbox rows, moves poison rows to the
# quarantine and keeps its leases; it cannot read or change any other table, nor the schema. The consumer only reads the tables its
# catalog rewarms from and verifies against.
locals {
  relay_role    = "redis_spanner_relay"
  consumer_role = "redis_spanner_consumer"
  access_ddl = [
    "CREATE ROLE ${local.relay_role}",
    "GRANT SELECT, DELETE ON TABLE Outbox TO ROLE ${local.relay_role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE OutboxLease, OutboxRelay TO ROLE ${local.relay_role}",
    "GRANT INSERT, UPDATE ON TABLE OutboxQuarantine TO ROLE ${local.relay_role}",
    "CREATE ROLE ${local.consumer_role}",
    "GRANT SELECT ON TABLE ${join(", ", var.consumer_tables)} TO ROLE ${local.consumer_role}",
  ]
}

# schema.sql holds only the pipeline's tables (the outbox and the relay's leases); a service's
# own tables exist already (import the database: `terraform import google_spanner_database.main
# projects/P/instances/I/databases/D`, and the outbox statements are appended in place) or come
# from var.extra_ddl.
# Terraform applies statements appended to the list in place; changing or removing an existing
# one would replace the database, which deletion_protection refuses. The list is schema.sql,
# then the access-control statements, then var.extra_ddl: once the database exists, new tables
# go to var.extra_ddl (and to schema.sql, for the emulator), and changes to existing tables
# belong in a reviewed migration.
resource "google_spanner_database" "main" {
  instance                 = google_spanner_instance.main.name
  name                     = var.database
  ddl                      = concat(local.ddl, local.access_ddl, var.extra_ddl)
  deletion_protection      = var.database_deletion_protection
  enable_drop_protection   = var.database_drop_protection
  version_retention_period = "1h"

  dynamic "encryption_config" {
    for_each = var.spanner_kms_key == null ? [] : [var.spanner_kms_key]
    content {
      kms_key_name = encryption_config.value
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.spanner_uses_key]
}
