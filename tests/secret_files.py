"""A password that must never show, and the files Redis TLS/ACL settings name, for tests of
how settings become Redis clients."""

from __future__ import annotations

from pathlib import Path

SECRET = "s3cret-value-91"


def secret_files(directory: Path) -> dict[str, Path]:
    """A CA, a client certificate and key (placeholders) and a password file holding
    ``SECRET``, by name."""
    found = {}
    for name in ("ca", "cert", "key", "password"):
        found[name] = directory / name
        found[name].write_text(SECRET if name == "password" else "pem")
    return found
