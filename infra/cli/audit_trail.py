"""The audit trail of operator actions: who did what, when, and how it ended.

Each of ``dlq replay``, ``dlq purge``, ``verify --repair``, ``rewarm`` and ``provision`` runs
inside :func:`audited`, which leaves one record when the command ends, whether it succeeded or
failed. The record goes to the ``AuditLog`` table in Spanner (``REDIS_SPANNER_AUDIT_SINK=spanner``,
the default) and, always, as one JSON line on the ``redis_spanner.audit`` logger, which a
deployment can route to a sink of its own. A record that cannot be stored never changes the
command's outcome: it is reported on stderr and in the log line.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from redis_spanner.schemas.settings import Settings

log = logging.getLogger("redis_spanner.audit")

SUCCEEDED, FAILED = "succeeded", "failed"


@dataclass(frozen=True)
class AuditRecord:
    audit_id: str
    principal: str
    action: str
    details: Mapping[str, Any]
    outcome: str
    error: str | None = None
    at: dt.datetime | None = None
    """The commit timestamp of the stored row; None before it is stored."""

    def as_dict(self) -> dict[str, Any]:
        return {"audit_id": self.audit_id, "at": self.at.isoformat() if self.at else None,
                "principal": self.principal, "action": self.action,
                "details": dict(self.details), "outcome": self.outcome, "error": self.error}


@dataclass
class Action:
    """What an action acted on; the command adds its counts as it learns them."""

    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def note(self, **details: Any) -> None:
        self.details.update(details)

    def failed(self, error: str | None) -> None:
        """The action ran to its end but failed (None: it did not)."""
        if error is not None:
            self.error = error


ON_GOOGLE_CLOUD = ("K_SERVICE", "CLOUD_RUN_JOB", "GCE_METADATA_HOST")
"""Variables that say the process runs on Google Cloud, where the metadata server answers."""


def principal(environ: Mapping[str, str] | None = None) -> str:
    """Who is acting: the service account (or account) of the Google credentials in use,
    else the local user as ``user@host``.

    Credentials are read from ``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's
    application-default file; the metadata server is asked only on Google Cloud (Cloud Run
    sets ``K_SERVICE``), so nothing is probed elsewhere. With both emulators set and no
    credentials file named, no credentials are in use: the local user."""
    env = os.environ if environ is None else environ
    local = f"{_user()}@{socket.gethostname()}"
    named = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not named and env.get("PUBSUB_EMULATOR_HOST") and env.get("SPANNER_EMULATOR_HOST"):
        return local
    path = named or _gcloud_credentials(env)
    on_cloud = any(env.get(name) for name in ON_GOOGLE_CLOUD)
    if path is None and not on_cloud:
        return local
    try:
        import google.auth
        from google.auth.exceptions import GoogleAuthError, TransportError

        try:
            if path is not None:
                credentials, _ = google.auth.load_credentials_from_file(
                    path)
            else:
                credentials, _ = google.auth.default()
            if getattr(credentials, "service_account_email", None) == "default" and on_cloud:
                from google.auth.transport.requests import Request

                credentials.refresh(Request())  # the metadata server names the account
        except (GoogleAuthError, TransportError, OSError, ValueError):
            return local
    except ImportError:  # pragma: no cover - google-auth comes with the Google clients
        return local
    for attribute in ("service_account_email", "account"):
        email = getattr(credentials, attribute, None)
        if isinstance(email, str) and email and email != "default":
            return email
    return local


def _gcloud_credentials(env: Mapping[str, str]) -> str | None:
    """gcloud's application-default credentials file, if there is one."""
    config = env.get("CLOUDSDK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config",
                                                        "gcloud")
    path = os.path.join(config, "application_default_credentials.json")
    return path if os.path.isfile(path) else None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


Store = Callable[[AuditRecord], None]


@contextmanager
def audited(action: str, settings: Settings, store: Store | None = None,
            **details: Any) -> Iterator[Action]:
    """Run an operator action and leave its one record, whatever its outcome. ``store``
    (default: the configured sink) keeps the record durably.

    An action refused for bad usage or configuration (what exits 2: a bad setting, missing
    credentials, a resource that does not exist) changed nothing; its record goes only to
    the debug log, so the command's one error line stays the only line."""
    acting = Action(dict(details))
    outcome, error, refused = SUCCEEDED, None, False
    try:
        yield acting
        if acting.error is not None:
            outcome, error = FAILED, acting.error
    except BaseException as e:
        outcome, error = FAILED, acting.error or _describe(e)
        if error is None:
            outcome = SUCCEEDED
        refused = _refused(e)
        raise
    finally:
        record = AuditRecord(str(uuid.uuid4()), principal(), action, acting.details,
                             outcome, error)
        _keep(record, settings, store, refused)


def _describe(error: BaseException) -> str | None:
    """The failure as one line; None for a clean exit (``typer.Exit(0)``)."""
    import typer
    from redis_spanner.infra.cli.errors import classify, one_line

    if isinstance(error, typer.Exit):
        code: int = error.exit_code
        return None if code == 0 else f"exit status {code}"
    known = classify(error)
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return str(one_line(known[1] if known else text))


def _refused(error: BaseException) -> bool:
    from redis_spanner.infra.cli.errors import USAGE, classify

    known = classify(error) if isinstance(error, Exception) else None
    return known is not None and known[0] == USAGE


def _keep(record: AuditRecord, settings: Settings, store: Store | None, refused: bool) -> None:
    """Store the record and log it. The log line is INFO when it is the record (the ``log``
    sink, or a store that failed under a finished action) and DEBUG otherwise; a failed
    action adds no line to its error line."""
    if store is None and settings.audit_sink == "spanner" and not refused:
        from redis_spanner.infra.cli.audit_store import store_in_spanner

        store = store_in_spanner(settings)
    problem: str | None = None
    if store is not None:
        try:
            store(record)
        except Exception as e:  # the action's outcome stands; the missing record is said
            from redis_spanner.infra.cli.errors import one_line

            problem = one_line(f"{type(e).__name__}: {e}")
    failed = record.outcome == FAILED
    if problem is not None and not failed:
        print(f"warning: the audit record of {record.action} was not stored: {problem}",
              file=sys.stderr)
    the_record = (store is None and not refused) or (problem is not None and not failed)
    log.log(logging.INFO if the_record else logging.DEBUG, "%s", json.dumps(
        {**record.as_dict(), "stored": store is not None and problem is None,
         **({"store_error": problem} if problem else {})}, default=str, sort_keys=True))
