"""The audit trail on the real emulators and Redis: each operator action, run as an operator
runs it, leaves one record in the AuditLog table, failed ones included, and
``redis-spanner audit`` lists them."""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import sys
from typing import Any

import pytest
from redis_spanner.infra.cli.app import app
from redis_spanner.infra.cli.audit_store import SpannerAuditLog
from redis_spanner.infra.demo.workload import seed_accounts
from redis_spanner.schemas.settings import Settings, get_settings
from typer.testing import CliRunner, Result


def cli(*args: str) -> Result:
    get_settings.cache_clear()
    return CliRunner().invoke(app, list(args))


def last_json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_each_operator_action_leaves_one_record_listed_by_audit(
    provisioned: Settings, database: Any,
) -> None:
    """provision, rewarm, verify --repair, dlq replay and dlq purge each leave exactly one
    record naming the local user, what was acted on (filters, counts), when, and the outcome;
    verify without --repair leaves none; audit --since filters by time; an unparsable --since
    is exit status 2."""
    seed_accounts(database, [f"au-{n}" for n in range(5)])
    assert cli("provision").exit_code == 0
    assert cli("rewarm", "--table", "Accounts", "--key-prefix", "au-").exit_code == 0
    assert cli("verify").exit_code == 0
    assert cli("verify", "--repair").exit_code == 0
    assert cli("dlq", "--wait", "0.5", "replay", "--reason", "undecodable").exit_code == 0
    assert cli("dlq", "--wait", "0.5", "purge", "--yes", "--id", "no-such").exit_code == 0
    assert cli("dlq", "purge", "--id", "refused-without-yes").exit_code == 2

    records = last_json(cli("audit", "--json"))
    assert [r["action"] for r in records] == ["provision", "rewarm", "verify --repair",
                                              "dlq replay", "dlq purge"]
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert all(r["principal"] == me and r["outcome"] == "succeeded" and r["at"]
               for r in records)
    by_action = {r["action"]: r["details"] for r in records}
    assert by_action["provision"]["database"] == provisioned.database
    assert by_action["rewarm"] == {**by_action["rewarm"], "table": "Accounts",
                                   "key_prefix": "au-", "rows": 5, "keys": 5, "written": 5}
    assert by_action["verify --repair"]["checked"] >= 5
    assert by_action["dlq replay"]["reasons"] == ["undecodable"]
    assert by_action["dlq replay"]["replayed"] == 0
    assert by_action["dlq purge"] == {"reasons": [], "types": [], "ids": ["no-such"],
                                      "limit": None, "purged": 0, "kept": 0}

    assert len(last_json(cli("audit", "--since", "1h", "--json"))) == 5
    assert last_json(cli("audit", "--since", "2999-01-01T00:00:00Z", "--json")) == []
    table = cli("audit")
    assert table.exit_code == 0 and "dlq purge" in table.stdout and "5 audit record(s)" in \
        table.stdout
    bad = subprocess.run([sys.executable, "-m", "redis_spanner.infra.cli", "audit", "--since",
                          "last tuesday"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--since" in bad.stderr


def test_a_failed_action_is_recorded_with_its_cause(
    provisioned: Settings, database: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dlq replay that cannot reach Redis fails with one line and exit 1, and its record
    says failed with the same cause (the address, never the password)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    result = cli("dlq", "--wait", "0.5", "--timeout", "1", "replay")
    assert result.exit_code == 1 and f"127.0.0.1:{port}" in result.stderr
    [record] = SpannerAuditLog(database).since(None, 10)
    assert (record.action, record.outcome) == ("dlq replay", "failed")
    assert record.error is not None and f"127.0.0.1:{port}" in record.error
    assert "hunter2" not in record.error
