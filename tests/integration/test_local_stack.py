"""The local stack against the real emulators and redis-server: start, reuse, reach, stop."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from google.cloud import spanner
from google.cloud.pubsub import PublisherClient
from redis_spanner.infra.cli.dev import dev_app
from redis_spanner.infra.local.discovery import StackError
from redis_spanner.infra.local.processes import free_ports
from redis_spanner.infra.local.stack import LocalStack, StackEnv, started
from redis_spanner.schemas.settings import Settings, get_settings
from typer.testing import CliRunner

SERVICE_VARS = ("PUBSUB_EMULATOR_HOST", "SPANNER_EMULATOR_HOST", "REDIS_URL")


def _live_group_members(pgid: int) -> list[int]:
    """Non-zombie processes whose process group is ``pgid``, read straight from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _recorded(stack: LocalStack) -> dict[str, dict[str, object]]:
    components: dict[str, dict[str, object]] = json.loads(stack.state_file.read_text())[
        "components"]
    return components


@pytest.fixture
def no_service_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's own stack starts everything: the session's exports are hidden from it."""
    for var in SERVICE_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of this module's own, separate from the session's."""
    stack = LocalStack(tmp_path_factory.mktemp("own-stack"))
    with pytest.MonkeyPatch.context() as patch:
        for var in SERVICE_VARS:
            patch.delenv(var, raising=False)
        stack.up()
    yield stack
    stack.down()


@pytest.mark.usefixtures("no_service_vars")
def test_up_then_down_leaves_no_process(tmp_path: Path) -> None:
    """`down` ends and reaps every process `up` started, gateway_main's emulator_main included."""
    stack = LocalStack(tmp_path)
    stack.up()
    groups = {name: int(str(c["pgid"])) for name, c in _recorded(stack).items()}
    members = {name: _live_group_members(pgid) for name, pgid in groups.items()}
    assert set(groups) == {"pubsub", "spanner", "redis"}
    assert len(members["spanner"]) >= 2, "gateway_main and emulator_main share one group"

    assert stack.down() == ["pubsub", "spanner", "redis"]

    assert {name: _live_group_members(pgid) for name, pgid in groups.items()} == {
        "pubsub": [], "spanner": [], "redis": []}
    for pid in (pid for pids in members.values() for pid in pids):
        assert _state(pid) in (None, "Z"), f"pid {pid} still runs"
    for pid in groups.values():
        assert _state(pid) is None, f"pid {pid} was not reaped"
    assert not stack.state_file.exists()
    assert stack.env() is None


def _state(pid: int) -> str | None:
    """The process state letter, or None once the pid is gone for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


@pytest.mark.usefixtures("no_service_vars")
def test_up_twice_is_idempotent(own_stack: LocalStack) -> None:
    """A second `up` returns the same environment and keeps the same processes."""
    first = own_stack.env()
    pids = own_stack.running_pids()
    assert first is not None
    assert own_stack.up() == first
    assert own_stack.running_pids() == pids
    assert set(pids) == {"pubsub", "spanner", "redis"}


def test_exports_reach_real_clients(own_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the exports in the environment, redis-py, Pub/Sub and Spanner clients get answers."""
    env = own_stack.env()
    assert env is not None
    for name, value in env.exports().items():
        monkeypatch.setenv(name, value)

    assert redis.Redis.from_url(os.environ["REDIS_URL"]).ping() is True

    publisher = PublisherClient()
    topic = publisher.create_topic(name="projects/local-stack/topics/reachable")
    listed = [t.name for t in publisher.list_topics(project="projects/local-stack")]
    assert listed == [topic.name]

    configs = [c.name for c in spanner.Client(project="local-stack").list_instance_configs()]
    assert configs == ["projects/local-stack/instanceConfigs/emulator-config"]

    spanner_rest = own_stack.status()["spanner"]
    assert spanner_rest["healthy"]
    pubsub_rest = f"http://{env.pubsub_emulator_host}/v1/projects/local-stack/topics"
    with urllib.request.urlopen(pubsub_rest, timeout=5) as response:
        assert json.load(response)["topics"][0]["name"] == topic.name


def test_cli_env_evals_in_a_shell(own_stack: LocalStack) -> None:
    """`eval "$(redis-spanner dev env)"` sets exactly the stack's variables in a shell."""
    result = CliRunner().invoke(dev_app, ["env", "--state-dir", str(own_stack.state_dir)])
    assert result.exit_code == 0, result.output
    shell = subprocess.run(
        ["bash", "-c", 'eval "$EXPORTS"; printf "%s\\n" "$PUBSUB_EMULATOR_HOST" '
         '"$SPANNER_EMULATOR_HOST" "$REDIS_URL"'],
        env={"PATH": os.environ["PATH"], "EXPORTS": result.stdout},
        capture_output=True, text=True, check=True,
    )
    env = own_stack.env()
    assert env is not None
    assert shell.stdout.splitlines() == list(env.exports().values())


def test_outside_tools_reach_the_stack_from_env_and_status(
    own_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dev env` exports GOOGLE_CLOUD_PROJECT (the settings' default, or the one already set),
    and `dev status` names the Spanner emulator's REST endpoint, which answers for that
    project."""
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    exported = CliRunner().invoke(dev_app, ["env", "--state-dir", str(own_stack.state_dir)])
    assert "export GOOGLE_CLOUD_PROJECT=redis-spanner-local" in exported.stdout.splitlines()
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "mine-123")
    kept = CliRunner().invoke(dev_app, ["env", "--state-dir", str(own_stack.state_dir)])
    assert "export GOOGLE_CLOUD_PROJECT=mine-123" in kept.stdout.splitlines()

    result = CliRunner().invoke(dev_app, ["status", "--json", "--state-dir",
                                          str(own_stack.state_dir)])
    rest = json.loads(result.stdout)["spanner"]["rest"]
    assert rest.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{rest}/v1/projects/mine-123/instanceConfigs",
                                timeout=10) as response:
        configs = json.load(response)["instanceConfigs"]
    assert [c["name"] for c in configs] == ["projects/mine-123/instanceConfigs/emulator-config"]
    table = CliRunner().invoke(dev_app, ["status", "--state-dir", str(own_stack.state_dir)])
    assert rest in table.stdout


def test_cli_status_json(own_stack: LocalStack) -> None:
    """`dev status --json` reports every component running and healthy, with its pid."""
    result = CliRunner().invoke(dev_app, ["status", "--json", "--state-dir",
                                          str(own_stack.state_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report.keys() == {"pubsub", "spanner", "redis"}
    assert all(s["running"] and s["healthy"] and s["pid"] for s in report.values())


@pytest.mark.usefixtures("no_service_vars")
def test_started_stops_only_what_it_started(own_stack: LocalStack) -> None:
    """`started()` reuses running components and on exit stops only the ones it started."""
    before = own_stack.running_pids()
    own_stack.down(["redis"])
    with started(own_stack.state_dir) as env:
        during = own_stack.running_pids()
        assert redis.Redis.from_url(env.redis_url).ping() is True
    after = own_stack.running_pids()
    own_stack.up()  # leave the module's stack whole

    assert during["pubsub"] == before["pubsub"] and during["spanner"] == before["spanner"]
    assert during["redis"] != before["redis"]
    assert after == {"pubsub": before["pubsub"], "spanner": before["spanner"]}


def test_environment_components_are_used_and_never_stopped(stack: StackEnv, tmp_path: Path) -> None:
    """With all three variables set, `up` starts nothing and `down` leaves those services up."""
    local = LocalStack(tmp_path)
    assert local.up(timeout=10) == stack
    assert local.running_pids() == {}
    assert all(s["external"] and s["healthy"] for s in local.status().values())
    assert local.down() == []
    assert redis.Redis.from_url(stack.redis_url).ping() is True


def _running_in(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory`` (the stack starts them there)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cwd").resolve() == directory.resolve() \
                    and _state(int(entry.name)) not in (None, "Z"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.usefixtures("no_service_vars")
def test_failed_start_stops_what_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When one component dies at start-up, the error shows its log and the others are stopped."""
    broken = tmp_path / "broken-redis-server"
    broken.write_text("#!/bin/sh\necho 'cannot bind: refusing to start'\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("REDIS_SPANNER_REDIS_SERVER", str(broken))
    stack = LocalStack(tmp_path / "state")

    with pytest.raises(StackError, match=r"(?s)redis exited during start-up.*refusing to start"):
        stack.up()

    assert _running_in(stack.state_dir) == []
    assert not stack.state_file.exists()


@pytest.mark.usefixtures("no_service_vars")
def test_silent_external_fails_and_stops_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable naming a service that does not answer fails `up`, naming that variable."""
    (closed,) = free_ports(1)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{closed}")
    stack = LocalStack(tmp_path)

    with pytest.raises(StackError, match=f"PUBSUB_EMULATOR_HOST=127.0.0.1:{closed} does not"):
        stack.up(timeout=2)

    assert _running_in(stack.state_dir) == []
    assert not stack.state_file.exists()


def test_settings_fixture_gives_private_names(settings: Settings, stack: StackEnv) -> None:
    """Per-test settings: the test project, valid ids of their own, and the session's stack."""
    assert (settings.project, settings.instance) == ("redis-spanner-test", "redis-spanner")
    assert re.fullmatch(r"[a-z][a-z0-9_-]{0,28}[a-z0-9]", settings.database)
    tag = settings.database.removeprefix("db-")
    names = [settings.topic, settings.subscription, settings.dead_letter_topic,
             settings.dead_letter_subscription, settings.namespace]
    assert len(set(names)) == len(names) and all(name.endswith(tag) for name in names)
    assert get_settings() == settings
    assert settings.pubsub_emulator_host == stack.pubsub_emulator_host
    assert settings.spanner_emulator_host == stack.spanner_emulator_host
    assert settings.require_redis_url() == stack.redis_url
