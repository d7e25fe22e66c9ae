"""Provisioning: the pipeline's Pub/Sub and Spanner resources created or converged (``run``)
from the one declaration (``declaration``, reading infra/pipeline.json, which Terraform reads
too), the same way on the emulators and on GCP."""
