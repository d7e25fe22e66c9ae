resource "google_spanner_instance" "main" {
  name             = var.instance
  config           = local.pipeline.spanner.instance_config
  display_name     = var.instance
  processing_units = local.pipeline.spanner.processing_units

  depends_on = [google_project_service.apis]
}

# Terraform applies statements appended to schema.sql in place; changing or removing an existing
# statement would replace the database, which deletion_protection refuses. Schema changes to
# existing tables belong in a reviewed migration, not in schema.sql.
resource "google_spanner_database" "main" {
  instance            = google_spanner_instance.main.name
  name                = var.database
  ddl                 = local.ddl
  deletion_protection = var.database_deletion_protection
}
