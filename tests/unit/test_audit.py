"""The audit trail's pure parts: who acts, --since, the record of each outcome, and the
consumer's audit line per decided event."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis_spanner.consumers.core import Processor
from redis_spanner.consumers.messages import Inbound
from redis_spanner.infra.cli.audit import parse_since
from redis_spanner.infra.cli.audit_trail import FAILED, SUCCEEDED, AuditRecord, audited, principal
from redis_spanner.schemas.catalog import DEMO
from redis_spanner.schemas.envelope import Event
from redis_spanner.schemas.errors import ConfigError, TransientError
from redis_spanner.schemas.events import EventType
from redis_spanner.schemas.keys import Catalog
from redis_spanner.schemas.settings import Settings

from tests.fakes import MemoryCache, MemoryDeadLetters, MemoryRows

EMULATED = {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1", "SPANNER_EMULATOR_HOST": "127.0.0.1:2"}


@pytest.fixture(autouse=True)
def _emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here looks for real credentials (that would probe the metadata server)."""
    for name, value in EMULATED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)


def test_principal_is_the_service_account_of_the_credentials_file(tmp_path: Path) -> None:
    """A service-account key file named by GOOGLE_APPLICATION_CREDENTIALS, or gcloud's
    application-default file, makes its email the principal; without one (on the emulators,
    or off Google Cloud where the metadata server is never asked) the local user is; an
    unreadable file is the local user too."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "k1",
        "private_key": pem, "client_email": "ops-bot@p.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    assert principal({**EMULATED, "GOOGLE_APPLICATION_CREDENTIALS": str(path)}) == \
        "ops-bot@p.iam.gserviceaccount.com"
    assert principal(EMULATED).startswith(getpass.getuser() + "@")
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    (gcloud / "application_default_credentials.json").write_text(path.read_text())
    assert principal({"CLOUDSDK_CONFIG": str(gcloud)}) == "ops-bot@p.iam.gserviceaccount.com"
    nowhere = {"CLOUDSDK_CONFIG": str(tmp_path / "none")}
    assert principal(nowhere).startswith(getpass.getuser() + "@")  # no metadata probe
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    assert principal({**EMULATED, "GOOGLE_APPLICATION_CREDENTIALS": str(broken)}) \
        .startswith(getpass.getuser() + "@")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200),
                                               ("7d", 7 * 86400), ("1.5h", 5400)])
def test_since_takes_durations(text: str, seconds: int) -> None:
    """--since DURATION means that long before now."""
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    assert now - parse_since(text, now) == dt.timedelta(seconds=seconds)


def test_since_takes_times_and_refuses_anything_else() -> None:
    """--since TIME is ISO 8601 (UTC when it has no zone); anything else is a ConfigError
    naming --since, which the command line turns into exit status 2."""
    assert parse_since("2026-12-01T13:00:00Z") == dt.datetime(2026, 12, 1, 13, tzinfo=dt.UTC)
    assert parse_since("2026-12-01 13:00") == dt.datetime(2026, 12, 1, 13, tzinfo=dt.UTC)
    for bad in ("yesterday", "5 minutes", "-3h", "", "13:00Z"):
        with pytest.raises(ConfigError, match="--since"):
            parse_since(bad)


def run_audited(body: object) -> list[AuditRecord]:
    kept: list[AuditRecord] = []
    settings = Settings(audit_sink="log")
    try:
        with audited("rewarm", settings, kept.append, table="Accounts") as action:
            action.note(rows=3)
            if isinstance(body, BaseException):
                raise body
            if isinstance(body, str):
                action.failed(body)
    except BaseException:  # the record is what is under test
        pass
    return kept


def test_every_outcome_leaves_exactly_one_record() -> None:
    """Success, a failure reported by the action, a raised error of the project's tree, an
    unexpected error, a non-zero exit and a clean exit each leave one record with who, what
    (details noted along the way) and the outcome."""
    cases: list[tuple[object, str, str | None]] = [
        (None, SUCCEEDED, None),
        ("2 republishes failed", FAILED, "2 republishes failed"),
        (TransientError("redis down"), FAILED, "redis down"),
        (RuntimeError("bug"), FAILED, "RuntimeError: bug"),
        (typer.Exit(1), FAILED, "exit status 1"),
        (typer.Exit(0), SUCCEEDED, None),
        (KeyboardInterrupt(), FAILED, "KeyboardInterrupt"),
    ]
    for body, outcome, error in cases:
        [record] = run_audited(body)
        assert (record.outcome, record.error) == (outcome, error), body
        assert record.details == {"table": "Accounts", "rows": 3}
        assert record.action == "rewarm" and record.principal


def test_a_record_that_cannot_be_stored_is_said_and_the_outcome_stands(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing store does not turn a successful action into an error: stderr says the
    record was not stored, and the audit log line still carries the record."""
    def broken(record: AuditRecord) -> None:
        raise TransientError("cannot reach spanner at 127.0.0.1:1")

    with caplog.at_level(logging.INFO, "redis_spanner.audit"), \
            audited("provision", Settings(audit_sink="log"), broken) as action:
        action.note(changed=[])
    assert "audit record of provision was not stored" in capsys.readouterr().err
    [line] = [json.loads(r.getMessage()) for r in caplog.records
              if r.name == "redis_spanner.audit"]
    assert line["action"] == "provision" and line["stored"] is False
    assert "127.0.0.1:1" in line["store_error"]


def test_a_refused_or_failed_action_adds_no_line_to_its_error_line(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    """An action refused for bad usage or configuration changed nothing: no store is tried
    and its record is a DEBUG line only. An action that failed keeps its record in the store;
    when the store fails too, nothing is printed beside the command's own error line."""
    calls: list[AuditRecord] = []

    def broken(record: AuditRecord) -> None:
        calls.append(record)
        raise TransientError("cannot reach spanner")

    with caplog.at_level(logging.DEBUG, "redis_spanner.audit"):
        with pytest.raises(ConfigError), audited("rewarm", Settings(), None):
            raise ConfigError("unknown --table 'Nope'")
        with pytest.raises(TransientError), audited("rewarm", Settings(), broken):
            raise TransientError("redis down")
    assert capsys.readouterr().err == ""
    assert [r.outcome for r in calls] == [FAILED]
    lines = [r for r in caplog.records if r.name == "redis_spanner.audit"]
    assert [r.levelno for r in lines] == [logging.DEBUG, logging.DEBUG]
    assert json.loads(lines[0].getMessage())["error"] == "unknown --table 'Nope'"


FORGED = 'a"}\u2028{"outcome": "forged'


def test_each_decided_event_leaves_one_escaped_audit_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The consumer logs one JSON line per message on redis_spanner.audit with event id, key,
    version and outcome (changed, superseded, dead_lettered with its reason); a message whose
    key would break the line is refused and its line carries none of that text."""
    processor = Processor(Catalog("rsc", DEMO), MemoryCache(), MemoryRows(),
                          MemoryDeadLetters(), retry_attempts=3, retry_seconds=5)
    events = [Event("0f8e2c1a-0001", EventType.ROW_CHANGED, "Accounts", ("a-1",), 200),
              Event("0f8e2c1a-0002", EventType.ROW_CHANGED, "Accounts", ("a-1",), 100)]
    batch = [Inbound(f"m{i}", e.encode(), e.attributes()) for i, e in enumerate(events)]
    forged = events[0].encode().replace(b'"a-1"', json.dumps(FORGED).encode())
    batch += [Inbound("m-poison", b"{not json"), Inbound("m-refused", forged)]
    with caplog.at_level(logging.INFO, "redis_spanner.audit"):
        for message in batch:
            processor.process([message])
    lines = [r.getMessage() for r in caplog.records if r.name == "redis_spanner.audit"]
    assert len(lines) == 4 and all(line.isascii() and "\n" not in line for line in lines)
    assert not any("forged" in line for line in lines)
    entries = [json.loads(line) for line in lines]
    assert entries[0] == {"message_id": "m0", "event_id": "0f8e2c1a-0001", "table": "Accounts",
                          "key": ["a-1"], "version": 200, "outcome": "changed"}
    assert entries[1]["outcome"] == "superseded" and entries[1]["version"] == 100
    assert entries[2] == {"message_id": "m-poison", "outcome": "dead_lettered",
                          "reason": "undecodable"}
    assert entries[3] == {"message_id": "m-refused", "outcome": "dead_lettered",
                          "reason": "key-refused"}
