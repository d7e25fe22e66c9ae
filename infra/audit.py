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


def principal(environ: Mapping[str, str] | None = None) -> str:
    """Who is acting: the service account (or account) of the Google credentials in use,
    else the local user. With both emulators set and no credentials file named, the local
    user, without looking for credentials (which would probe the metadata server)."""
    env = os.environ if environ is None else environ
    local = f"{_user()}@{socket.gethostname()}"
    named = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not named and env.get("PUBSUB_EMULATOR_HOST") and env.get("SPANNER_EMULATOR_HOST"):
        return local
    try:
        import google.auth
        from google.auth.exceptions import GoogleAuthError

        try:
            if named:
                credentials, _ = google.auth.load_credentials_from_file(  # type: ignore[no-untyped-call]
                    named)
            else:
                credentials, _ = google.auth.default()
        except GoogleAuthError:
            return local
    except ImportError:  # pragma: no cover - google-auth comes with the Google clients
        return local
    for attribute in ("service_account_email", "account"):
        email = getattr(credentials, attribute, None)
        if isinstance(email, str) and email and email != "default":
            return email
    return local


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
    (default: the configured sink) keeps the record durably."""
    acting = Action(dict(details))
    outcome, error = SUCCEEDED, None
    try:
        yield acting
        if acting.error is not None:
            outcome, error = FAILED, acting.error
    except BaseException as e:
        outcome, error = FAILED, acting.error or _describe(e)
        if error is None:
            outcome = SUCCEEDED
        raise
    finally:
        record = AuditRecord(str(uuid.uuid4()), principal(), action, acting.details,
                             outcome, error)
        _keep(record, settings, store)


def _describe(error: BaseException) -> str | None:
    """The failure as one line; None for a clean exit (``typer.Exit(0)``)."""
    import typer
    from redis_spanner.infra.cli_errors import classify, one_line

    if isinstance(error, typer.Exit):
        code: int = error.exit_code
        return None if code == 0 else f"exit status {code}"
    known = classify(error)
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return str(one_line(known[1] if known else text))


def _keep(record: AuditRecord, settings: Settings, store: Store | None) -> None:
    stored: str | None = None
    if store is None and settings.audit_sink == "spanner":
        from redis_spanner.infra.audit_store import store_in_spanner

        store = store_in_spanner(settings)
    if store is not None:
        try:
            store(record)
        except Exception as e:  # the action's outcome stands; the missing record is said
            from redis_spanner.infra.cli_errors import one_line

            stored = one_line(f"{type(e).__name__}: {e}")
            print(f"warning: the audit record of {record.action} was not stored: {stored}",
                  file=sys.stderr)
    log.info("%s", json.dumps({**record.as_dict(), "stored": stored is None if store else None,
                               **({"store_error": stored} if stored else {})},
                              default=str, sort_keys=True))
