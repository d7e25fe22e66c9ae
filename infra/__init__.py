"""What exists: the local stack, provisioning (one declaration for emulators and GCP), the CLI."""
