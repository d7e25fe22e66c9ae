"""Finding the local stack's tools: the Pub/Sub and Spanner emulators, Java and redis-server.

Each tool may be named by a REDIS_SPANNER_* variable; otherwise it is looked for in the Google
Cloud SDK or on PATH. What is missing raises ``StackError`` with the line that installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from contextlib import suppress
from functools import lru_cache
from pathlib import Path

INSTALL_JAVA = "apt-get install openjdk-17-jre-headless"
INSTALL_EMULATORS = (
    "apt-get install google-cloud-cli-pubsub-emulator google-cloud-cli-spanner-emulator"
    " (or: gcloud components install pubsub-emulator cloud-spanner-emulator)"
)
INSTALL_REDIS = "apt-get install redis-server"
SDK_ROOTS = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk",
             "~/google-cloud-sdk")


class StackError(RuntimeError):
    """The local stack cannot start or stop; the message says what to do about it."""


@lru_cache(maxsize=1)
def sdk_root() -> Path | None:
    """The Google Cloud SDK root: gcloud's own (``gcloud info``), else the first standard path."""
    if gcloud := shutil.which("gcloud"):
        root = Path(gcloud).resolve().parent.parent
        if (root / "platform").is_dir() and (root / "lib").is_dir():
            return root  # what `gcloud info` would say, without its second of start-up
        with suppress(OSError, subprocess.TimeoutExpired):
            out = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"],
                                 capture_output=True, text=True, timeout=30, check=False)
            if out.stdout.strip() and Path(out.stdout.strip()).is_dir():
                return Path(out.stdout.strip())
    return next((p for p in map(Path, map(os.path.expanduser, SDK_ROOTS)) if p.is_dir()), None)


def _executable(path: Path | None) -> bool:
    return path is not None and path.is_file() and os.access(path, os.X_OK)


def _tool(override_var: str, default: Path | None, what: str, install: str) -> Path:
    if override := os.environ.get(override_var):
        if _executable(Path(override)):
            return Path(override)
        raise StackError(f"{what} not found at {override} (from ${override_var}); "
                         f"install it with: {install}, or point ${override_var} at it")
    if default is not None and _executable(default):
        return default
    where = f" at {default}" if default else ""
    raise StackError(f"{what} not found{where}; install it with: {install}, "
                     f"or set ${override_var} to its path")


def find_pubsub_emulator() -> Path:
    root = None if os.environ.get("REDIS_SPANNER_PUBSUB_EMULATOR") else sdk_root()
    default = root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator" if root else None
    return _tool("REDIS_SPANNER_PUBSUB_EMULATOR", default,
                 "Pub/Sub emulator (cloud-pubsub-emulator)", INSTALL_EMULATORS)


def find_spanner_emulator() -> Path:
    root = None if os.environ.get("REDIS_SPANNER_SPANNER_EMULATOR") else sdk_root()
    default = root / "bin/cloud_spanner_emulator/gateway_main" if root else None
    return _tool("REDIS_SPANNER_SPANNER_EMULATOR", default, "Spanner emulator (gateway_main)",
                 INSTALL_EMULATORS)


def find_redis_server() -> Path:
    found = shutil.which("redis-server")
    return _tool("REDIS_SPANNER_REDIS_SERVER", Path(found) if found else None, "redis-server",
                 INSTALL_REDIS)


def find_java() -> Path:
    """The java the Pub/Sub emulator's launcher will run ($JAVA_HOME first), if it is 17+."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else Path(shutil.which("java") or "/nonexistent")
    if not _executable(found):
        raise StackError(f"Java 17 not found (the Pub/Sub emulator needs it); "
                         f"install it with: {INSTALL_JAVA}")
    out = subprocess.run([str(found), "-version"], capture_output=True, text=True, timeout=30,
                         check=False)
    match = re.search(r'version "(?:1\.)?(\d+)', out.stderr + out.stdout)  # "1.8.0" is Java 8
    major = int(match[1]) if match else 0
    if major < 17:
        raise StackError(f"{found} is Java {major or 'of unknown version'}, the Pub/Sub emulator "
                         f"needs Java 17+; install it with: {INSTALL_JAVA}")
    return found
