"""The local stack's discovery, bookkeeping and CLI, without starting any service."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from redis_spanner.infra.cli.dev import dev_app
from redis_spanner.infra.local import processes
from redis_spanner.infra.local.discovery import (
    StackError,
    find_java,
    find_pubsub_emulator,
    find_redis_server,
    find_spanner_emulator,
)
from redis_spanner.infra.local.processes import group_members
from redis_spanner.infra.local.stack import Component, LocalStack, StackEnv, default_state_dir
from typer.testing import CliRunner

EMULATORS = ("apt-get install google-cloud-cli-pubsub-emulator google-cloud-cli-spanner-emulator",
             "gcloud components install pubsub-emulator cloud-spanner-emulator")
OVERRIDES = ("REDIS_SPANNER_PUBSUB_EMULATOR", "REDIS_SPANNER_SPANNER_EMULATOR",
             "REDIS_SPANNER_REDIS_SERVER")
SERVICE_VARS = ("PUBSUB_EMULATOR_HOST", "SPANNER_EMULATOR_HOST", "REDIS_URL")


@pytest.fixture
def no_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every tool override points at a missing file, and no external service is configured."""
    for var in SERVICE_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in OVERRIDES:
        monkeypatch.setenv(var, str(tmp_path / "missing" / var.lower()))
    return tmp_path


@pytest.mark.parametrize(
    ("override", "find", "install"),
    [
        ("REDIS_SPANNER_PUBSUB_EMULATOR", find_pubsub_emulator, EMULATORS),
        ("REDIS_SPANNER_SPANNER_EMULATOR", find_spanner_emulator, EMULATORS),
        ("REDIS_SPANNER_REDIS_SERVER", find_redis_server, ("apt-get install redis-server",)),
    ],
)
@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_missing_tool_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, override: str,
    find: Callable[[], Path], install: tuple[str, ...], kind: str,
) -> None:
    """A tool that is absent (or not executable) is reported with its path and its install line."""
    path = tmp_path / "tool"
    if kind == "not executable":
        path.write_text("#!/bin/sh\n")
    monkeypatch.setenv(override, str(path))
    with pytest.raises(StackError) as raised:
        find()
    message = str(raised.value)
    assert str(path) in message
    assert override in message
    for line in install:
        assert line in message


def test_an_executable_override_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An override naming an executable file wins over the SDK and PATH."""
    tool = _script(tmp_path / "my-redis-server", "exit 0")
    monkeypatch.setenv("REDIS_SPANNER_REDIS_SERVER", str(tool))
    assert find_redis_server() == tool


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def java_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], None]:
    """Put a fake `java` that reports the given version first on an otherwise empty PATH."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    def install(version: str) -> None:
        _script(tmp_path / "java", f"echo 'openjdk version \"{version}\" 2025-04-15' >&2")

    return install


def test_missing_java_names_the_package(java_on_path: Callable[[str], None]) -> None:
    """Without java the message names the OpenJDK 17 package."""
    with pytest.raises(StackError, match="apt-get install openjdk-17-jre-headless"):
        find_java()


@pytest.mark.parametrize("version", ["11.0.22", "1.8.0_392"])
def test_old_java_is_refused(java_on_path: Callable[[str], None], version: str) -> None:
    """Java older than 17 (both version styles) is refused, naming the package to install."""
    java_on_path(version)
    with pytest.raises(StackError, match=r"needs Java 17\+.*openjdk-17-jre-headless"):
        find_java()


@pytest.mark.parametrize("version", ["17.0.15", "21"])
def test_java_17_or_newer_is_accepted(
    java_on_path: Callable[[str], None], tmp_path: Path, version: str
) -> None:
    """Java 17 and newer pass the check."""
    java_on_path(version)
    assert find_java() == tmp_path / "java"


def test_up_reports_every_missing_tool_and_starts_nothing(no_services: Path) -> None:
    """`up` lists all missing tools in one error and leaves no state behind."""
    stack = LocalStack(no_services / "state")
    with pytest.raises(StackError) as raised:
        stack.up(timeout=5)
    message = str(raised.value)
    for var in OVERRIDES:
        assert var in message
    assert not stack.state_file.exists()
    assert stack.env() is None


def test_exports_name_the_client_variables() -> None:
    """The exports are exactly the three variables the clients read."""
    env = StackEnv("127.0.0.1:1", "127.0.0.1:2", "redis://127.0.0.1:3/0")
    assert env.exports() == {
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:1",
        "SPANNER_EMULATOR_HOST": "127.0.0.1:2",
        "REDIS_URL": "redis://127.0.0.1:3/0",
    }


def test_default_state_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$REDIS_SPANNER_STATE_DIR, then $XDG_STATE_HOME/redis-spanner, then ~/.local/state."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REDIS_SPANNER_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "redis-spanner"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "redis-spanner"
    monkeypatch.setenv("REDIS_SPANNER_STATE_DIR", str(tmp_path / "explicit"))
    assert default_state_dir() == tmp_path / "explicit"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process leading its own session, like a stack component."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def _record(stack: LocalStack, process: subprocess.Popen[bytes], start_time: str) -> None:
    stack.state_dir.mkdir(parents=True, exist_ok=True)
    component = Component("redis", "redis://127.0.0.1:1/0", pid=process.pid, pgid=process.pid,
                          start_time=start_time, command=["sleep", "60"])
    stack.state_file.write_text(json.dumps({"components": {"redis": asdict(component)}}))


def _start_time(pid: int) -> str:
    started = processes.start_time(pid)
    assert started is not None
    return started


def test_down_spares_a_reused_pid(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """A recorded pid now held by another process (other start time) is not signalled."""
    stack = LocalStack(tmp_path)
    _record(stack, sleeper, start_time="1")
    assert stack.down() == []
    assert sleeper.poll() is None
    assert not stack.state_file.exists()


def test_down_stops_a_recorded_process(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """A recorded process whose start time matches is stopped, with its whole group."""
    stack = LocalStack(tmp_path)
    _record(stack, sleeper, start_time=_start_time(sleeper.pid))
    assert stack.down() == ["redis"]
    assert sleeper.wait(timeout=5) is not None
    assert group_members(sleeper.pid) == []


def test_status_of_an_empty_state_dir(tmp_path: Path) -> None:
    """With nothing recorded every component is reported as not running."""
    report = LocalStack(tmp_path).status()
    assert set(report) == {"pubsub", "spanner", "redis"}
    assert not any(s["running"] or s["healthy"] or s["pid"] for s in report.values())


def test_cli_env_without_a_stack_exits_1(tmp_path: Path) -> None:
    """`dev env` with no running stack prints nothing on stdout and says why on stderr."""
    result = CliRunner().invoke(dev_app, ["env", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no local stack is running" in result.stderr


def test_cli_stack_error_exits_2_without_traceback(no_services: Path) -> None:
    """`dev up` turns a StackError into its message on stderr and exit status 2."""
    result = CliRunner().invoke(dev_app, ["up", "--state-dir", str(no_services / "state")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "apt-get install redis-server" in result.stderr
    assert "Traceback" not in result.output
