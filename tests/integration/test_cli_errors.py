"""Every command, given bad input or an unreachable dependency, answers with one line on stderr
naming the cause and the setting or address, exit status 2 (usage or configuration) or 1
(failure), no traceback, within seconds. And with --json, stdout holds JSON and nothing else.

Each case runs the installed entry point in a subprocess, as a person would; the reachable
components are the session's stack, the unreachable ones a closed loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis_spanner.infra.local.stack import StackEnv
from redis_spanner.infra.spanner.ddl import DEMO_SCHEMA_PATH
from redis_spanner.schemas.settings import Settings

# The module's fixture runs every case (a few at a time) before the first test ends.
pytestmark = pytest.mark.timeout(600)
USAGE, FAILURE = 2, 1
# Probes give up after 3 s; the rest is start-up, slow on a loaded machine: "never hangs".
BOUND_SECONDS = 60.0
UNSET = None


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLOSED = f"127.0.0.1:{closed_port()}"
NOT_A_DIR = "NOT_A_DIR"  # replaced by a regular file's path
EMPTY_DIR = "EMPTY_DIR"  # replaced by an empty directory
NOT_GRPC = "NOT_GRPC"  # replaced by the stack's Redis address: it answers, but not in gRPC
TAKEN_PORT = "TAKEN_PORT"  # replaced by the stack's Redis port: in use
NO_STACK: dict[str, str | None] = {"PUBSUB_EMULATOR_HOST": UNSET, "SPANNER_EMULATOR_HOST": UNSET,
                                   "REDIS_URL": UNSET}
NO_CREDENTIALS = {**NO_STACK, "GOOGLE_APPLICATION_CREDENTIALS": UNSET,
                  "NO_GCE_CHECK": "True", "GCE_METADATA_HOST": CLOSED, "GCE_METADATA_IP": CLOSED}


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    status: int
    named: str
    """What the one line must name: the setting, option, path or address involved."""
    env: dict[str, str | None] = field(default_factory=dict)


CASES = {
    # bad usage or configuration: exit 2
    "provision-no-credentials": Case(("provision",), USAGE, "GOOGLE_APPLICATION_CREDENTIALS",
                                     NO_CREDENTIALS),
    "relay-invalid-setting": Case(("relay",), USAGE, "REDIS_SPANNER_RELAY_BATCH",
                                  {"REDIS_SPANNER_RELAY_BATCH": "0"}),
    "worker-invalid-setting": Case(("worker",), USAGE, "REDIS_SPANNER_WORKER_STREAMS",
                                   {"REDIS_SPANNER_WORKER_STREAMS": "abc"}),
    "worker-bad-option": Case(("worker", "--streams", "0"), USAGE, "--streams"),
    "worker-bad-log-format": Case(("worker",), USAGE, "REDIS_SPANNER_LOG_FORMAT",
                                  {"REDIS_SPANNER_LOG_FORMAT": "xml"}),
    "worker-bad-namespace": Case(("worker",), USAGE, "REDIS_SPANNER_NAMESPACE",
                                 {"REDIS_SPANNER_NAMESPACE": "Not A Namespace"}),
    "serve-no-push-audience": Case(("serve",), USAGE, "REDIS_SPANNER_PUSH_AUDIENCE"),
    "serve-push-auth-off-on-gcp": Case(("serve",), USAGE, "REDIS_SPANNER_PUSH_AUTH",
                                       {"REDIS_SPANNER_PUSH_AUTH": "off",
                                        "SPANNER_EMULATOR_HOST": UNSET}),
    "serve-no-redis-url": Case(("serve",), USAGE, "REDIS_URL",
                               {"REDIS_URL": UNSET, "REDIS_SPANNER_PUSH_AUTH": "off"}),
    "serve-port-in-use": Case(("serve", "--port", TAKEN_PORT), USAGE, "--port",
                              {"REDIS_SPANNER_PUSH_AUTH": "off"}),
    "verify-not-a-catalog": Case(("verify",), USAGE, "REDIS_SPANNER_CATALOG",
                                 {"REDIS_SPANNER_CATALOG": "os:path"}),
    "verify-bad-redis-url": Case(("verify",), USAGE, "REDIS_URL",
                                 {"REDIS_URL": "http://secret@x"}),
    "rewarm-unknown-table": Case(("rewarm", "--table", "Nope"), USAGE, "--table 'Nope'"),
    "rewarm-no-database": Case(("rewarm", "--table", "Accounts"), USAGE, "not found",
                               {"REDIS_SPANNER_DATABASE": "no-such-db"}),
    "dlq-list-invalid-name": Case(("dlq", "list"), USAGE,
                                  "REDIS_SPANNER_DEAD_LETTER_SUBSCRIPTION",
                                  {"REDIS_SPANNER_DEAD_LETTER_SUBSCRIPTION": "x"}),
    "dlq-show-no-id": Case(("dlq", "show"), USAGE, "ID"),
    "dlq-replay-no-redis-url": Case(("dlq", "replay"), USAGE, "REDIS_URL", {"REDIS_URL": UNSET}),
    "dlq-purge-without-yes": Case(("dlq", "purge"), USAGE, "--yes"),
    "outbox-quarantine-bad-option": Case(("outbox", "quarantine", "--limit", "0"), USAGE,
                                         "--limit"),
    "outbox-requeue-no-id": Case(("outbox", "requeue"), USAGE, "--id"),
    "demo-invalid-setting": Case(("demo",), USAGE, "REDIS_SPANNER_RETRY_SECONDS",
                                 {"REDIS_SPANNER_RETRY_SECONDS": "-1"}),
    "bench-invalid-setting": Case(("bench",), USAGE, "REDIS_SPANNER_TOPIC",
                                  {"REDIS_SPANNER_TOPIC": "x"}),
    "bench-plot-nowhere": Case(("bench", "--quick", "--plot", "/nonexistent/dir/b.png"), USAGE,
                               "/nonexistent/dir"),
    "dev-up-state-dir": Case(("dev", "up", "--state-dir", NOT_A_DIR), USAGE, "stack.json"),
    "dev-down-state-dir": Case(("dev", "down", "--state-dir", NOT_A_DIR), USAGE, "stack.json"),
    "dev-status-state-dir": Case(("dev", "status", "--state-dir", NOT_A_DIR), USAGE,
                                 "stack.json"),
    "dev-env-state-dir": Case(("dev", "env", "--state-dir", NOT_A_DIR), USAGE, "stack.json"),
    # an unreachable dependency: exit 1
    "provision-spanner-down": Case(("provision",), FAILURE, CLOSED,
                                   {"SPANNER_EMULATOR_HOST": CLOSED}),
    "provision-pubsub-not-grpc": Case(("provision",), FAILURE, "PUBSUB_EMULATOR_HOST=127.0.0.1:",
                                      {"PUBSUB_EMULATOR_HOST": NOT_GRPC}),
    "relay-pubsub-down": Case(("relay",), FAILURE, CLOSED, {"PUBSUB_EMULATOR_HOST": CLOSED}),
    "worker-redis-down": Case(("worker",), FAILURE, CLOSED, {"REDIS_URL": f"redis://{CLOSED}"}),
    "serve-pubsub-down": Case(("serve",), FAILURE, CLOSED, {"PUBSUB_EMULATOR_HOST": CLOSED,
                                                            "REDIS_SPANNER_PUSH_AUTH": "off"}),
    "verify-spanner-down": Case(("verify",), FAILURE, CLOSED, {"SPANNER_EMULATOR_HOST": CLOSED}),
    "rewarm-redis-down": Case(("rewarm", "--table", "Accounts"), FAILURE, CLOSED,
                              {"REDIS_URL": f"redis://:secret@{CLOSED}/0"}),
    "dlq-list-pubsub-down": Case(("dlq", "--timeout", "2", "list"), FAILURE, CLOSED,
                                 {"PUBSUB_EMULATOR_HOST": CLOSED}),
    "dlq-show-pubsub-down": Case(("dlq", "--timeout", "2", "show", "some-id"), FAILURE, CLOSED,
                                 {"PUBSUB_EMULATOR_HOST": CLOSED}),
    "dlq-replay-redis-down": Case(("dlq", "--timeout", "2", "replay"), FAILURE, CLOSED,
                                  {"REDIS_URL": f"redis://{CLOSED}"}),
    "dlq-purge-pubsub-down": Case(("dlq", "--timeout", "2", "purge", "--yes"), FAILURE, CLOSED,
                                  {"PUBSUB_EMULATOR_HOST": CLOSED}),
    "outbox-quarantine-spanner-down": Case(("outbox", "quarantine", "--timeout", "3"), FAILURE,
                                           CLOSED, {"SPANNER_EMULATOR_HOST": CLOSED}),
    "outbox-requeue-spanner-down": Case(("outbox", "requeue", "--id", "x", "--timeout", "3"),
                                        FAILURE, CLOSED, {"SPANNER_EMULATOR_HOST": CLOSED}),
    "demo-pubsub-down": Case(("demo", "--duration", "1"), FAILURE, CLOSED,
                             {"PUBSUB_EMULATOR_HOST": CLOSED}),
    "bench-spanner-down": Case(("bench",), FAILURE, CLOSED, {"SPANNER_EMULATOR_HOST": CLOSED}),
    "dev-up-redis-down": Case(("dev", "up", "--state-dir", EMPTY_DIR), FAILURE, CLOSED,
                              {"REDIS_URL": f"redis://{CLOSED}"}),
    "dev-status-nothing-running": Case(("dev", "status", "--state-dir", EMPTY_DIR), FAILURE,
                                       "not healthy", NO_STACK),
    "dev-env-nothing-running": Case(("dev", "env", "--state-dir", EMPTY_DIR), FAILURE,
                                    "no local stack is running", NO_STACK),
}


@dataclass(frozen=True)
class Ran:
    status: int
    stdout: str
    stderr: str
    seconds: float


def redis_spanner(args: tuple[str, ...], env: dict[str, str | None], cwd: Path) -> Ran:
    environment = dict(os.environ)
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from redis_spanner.infra.cli.app import main; main()", *args],
        env=environment, cwd=cwd, capture_output=True, text=True, timeout=90, check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def ran(stack: StackEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Ran]]:
    """Every case, run a few at a time."""
    home = tmp_path_factory.mktemp("home")
    not_grpc = stack.redis_url.removeprefix("redis://").split("/")[0]
    regular = home / "a-file"
    regular.write_text("")

    def one(case: Case) -> Ran:
        args = tuple(str(regular) if a == NOT_A_DIR else
                     str(tmp_path_factory.mktemp("empty")) if a == EMPTY_DIR else
                     not_grpc.rsplit(":", 1)[1] if a == TAKEN_PORT else a
                     for a in case.args)
        env = {"HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
               "REDIS_SPANNER_STATE_DIR": str(home / "state"),
               **{k: not_grpc if v == NOT_GRPC else v for k, v in case.env.items()}}
        return redis_spanner(args, env, home)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(CASES, pool.map(one, CASES.values()), strict=True))
    yield results


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_naming_the_cause_with_the_right_status(
    name: str, ran: dict[str, Ran]
) -> None:
    """One line on stderr, naming the setting, option or address; exit 2 for usage or
    configuration, 1 for an unreachable dependency; no traceback; within seconds."""
    case, result = CASES[name], ran[name]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert case.named in result.stderr, result.stderr
    assert result.status == case.status, result.stderr
    assert result.seconds < BOUND_SECONDS
    assert "secret" not in result.stderr


def test_every_command_has_a_configuration_and_an_unreachable_case() -> None:
    """The cases cover the class: each command at least once with each exit status (dev down
    has no dependency to miss)."""
    commands = ("provision", "relay", "worker", "serve", "verify", "rewarm", "dlq list",
                "dlq show", "dlq replay", "dlq purge", "outbox quarantine", "outbox requeue",
                "demo", "bench", "dev up", "dev down", "dev status", "dev env")
    for status in (USAGE, FAILURE):
        missing = {c for c in commands if not any(
            name.startswith(c.replace(" ", "-") + "-") and case.status == status
            for name, case in CASES.items())}
        assert missing == (set() if status == USAGE else {"dev down"}), status


def test_json_output_is_json_alone_on_stdout(settings: Settings, tmp_path: Path) -> None:
    """With --json, stdout parses as one JSON document whatever else was said (on stderr):
    provision, verify and dev status."""
    env: dict[str, str | None] = {"REDIS_SPANNER_STATE_DIR": str(tmp_path)}
    provisioned = redis_spanner(("provision", "--ddl", str(DEMO_SCHEMA_PATH), "--json"), env,
                                tmp_path)
    assert provisioned.status == 0, provisioned.stderr
    assert json.loads(provisioned.stdout)["resources"]
    checked = redis_spanner(("verify", "--json"), env, tmp_path)
    assert checked.status == 0, checked.stderr
    assert json.loads(checked.stdout)["checked"] == 0 and "cache vs Spanner" in checked.stderr
    up = redis_spanner(("dev", "up"), env, tmp_path)  # records the session's stack as external
    assert up.status == 0, up.stderr
    status = redis_spanner(("dev", "status", "--json"), env, tmp_path)
    assert status.status == 0, status.stderr
    assert all(s["healthy"] for s in json.loads(status.stdout).values())
