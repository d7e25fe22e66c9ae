"""The local stack: the Pub/Sub and Spanner emulators and a redis-server on free loopback ports.

``LocalStack(state_dir).up()`` starts whatever is not running yet and records each process in
``state_dir/stack.json``; ``down()`` stops exactly the recorded processes and nothing else. A
component whose variable (PUBSUB_EMULATOR_HOST, SPANNER_EMULATOR_HOST, REDIS_URL) is already set
in the environment is external: it is used as it is and never stopped. Processes are told apart
by their start time, read through psutil (Linux and macOS; only Linux is tested).
``LocalStack(state_dir, redis_cluster=True)`` starts a three-primary Redis Cluster instead of a
single redis-server (``redis_spanner.infra.local.redis_cluster``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypedDict

from redis_spanner.infra.local.discovery import (
    StackError,
    find_java,
    find_pubsub_emulator,
    find_redis_server,
    find_spanner_emulator,
)
from redis_spanner.infra.local.processes import (
    LOOPBACK,
    alive,
    free_ports,
    http_ok,
    is_same_process,
    log_tail,
    redis_ok,
    spawn_group,
    start_time,
    stop_group,
    tcp_ok,
)
from redis_spanner.infra.local.redis_cluster import cluster_launch, cluster_ok, join_cluster

PUBSUB, SPANNER, REDIS = "pubsub", "spanner", "redis"
COMPONENTS = (PUBSUB, SPANNER, REDIS)
ENV_VARS = {PUBSUB: "PUBSUB_EMULATOR_HOST", SPANNER: "SPANNER_EMULATOR_HOST", REDIS: "REDIS_URL"}
CLUSTER_VAR = "REDIS_SPANNER_REDIS_CLUSTER"
STATE_FILE = "stack.json"
EXTERNAL_GRACE_SECONDS = 10.0
# Every test creates its own database; the emulator's default cap is 100 per instance.
MAX_DATABASES = 10_000


@dataclass(frozen=True)
class StackEnv:
    """Where the running stack answers, in the form the clients read from the environment."""

    pubsub_emulator_host: str
    spanner_emulator_host: str
    redis_url: str
    redis_cluster: bool = False

    def exports(self) -> dict[str, str]:
        exports = {"PUBSUB_EMULATOR_HOST": self.pubsub_emulator_host,
                   "SPANNER_EMULATOR_HOST": self.spanner_emulator_host,
                   "REDIS_URL": self.redis_url}
        if self.redis_cluster:
            exports[CLUSTER_VAR] = "true"
        return exports


@dataclass(frozen=True)
class Component:
    """One recorded component. Own processes lead their own session, so ``pgid == pid``."""

    name: str
    address: str
    external: bool = False
    pid: int | None = None
    pgid: int | None = None
    start_time: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    log: str | None = None
    cluster: bool = False
    """A Redis Cluster: every node in the one process group, ``ports`` one per node."""


Launch = tuple[list[str], str, dict[str, int]]  # command, address, ports


def pubsub_launch() -> Launch:
    """The Pub/Sub emulator on a free loopback port."""
    emulator = find_pubsub_emulator()
    find_java()
    (port,) = free_ports(1)
    return ([str(emulator), f"--host={LOOPBACK}", f"--port={port}"],
            f"{LOOPBACK}:{port}", {"grpc": port})


def spanner_launch(*flags: str) -> Launch:
    """The Spanner emulator gateway on free loopback ports, with extra gateway ``flags``."""
    gateway = find_spanner_emulator()
    grpc, http = free_ports(2)
    return ([str(gateway), "--hostname", LOOPBACK, "--grpc_port", str(grpc),
             "--http_port", str(http), f"--override_max_databases_per_instance="
             f"{MAX_DATABASES}", *flags], f"{LOOPBACK}:{grpc}", {"grpc": grpc, "http": http})


def redis_launch(directory: Path) -> Launch:
    """A redis-server on a free loopback port that keeps nothing on disk, evicting the least
    recently used keys of any kind under memory pressure (``volatile-*`` policies would pick
    tombstones first: they carry the shortest TTLs)."""
    server = find_redis_server()
    (port,) = free_ports(1)
    return ([str(server), "--port", str(port), "--bind", LOOPBACK, "--save", "",
             "--appendonly", "no", "--maxmemory-policy", "allkeys-lru", "--dir", str(directory)],
            f"redis://{LOOPBACK}:{port}/0", {"redis": port})


class ComponentStatus(TypedDict):
    running: bool
    healthy: bool
    address: str | None
    port: int | None
    pid: int | None
    external: bool
    log: str | None
    rest: str | None
    """The component's REST endpoint (the emulators'), for gcloud, curl and other SDKs."""


def default_state_dir() -> Path:
    if explicit := os.environ.get("REDIS_SPANNER_STATE_DIR"):
        return Path(explicit)
    if xdg := os.environ.get("XDG_STATE_HOME"):
        return Path(xdg) / "redis-spanner"
    return Path.home() / ".local" / "state" / "redis-spanner"


# --- components ----------------------------------------------------------------------------------

def _is_ours(c: Component) -> bool:
    return c.pid is not None and is_same_process(c.pid, c.start_time)


def _stop(c: Component) -> bool:
    """Stop a recorded process group; True if anything of it was still running."""
    if c.external or c.pgid is None or c.pid is None:
        return False
    return stop_group(c.name, c.pid, c.pgid, c.start_time)


def _spawn(name: str, log: Path, command: list[str], address: str,
           ports: dict[str, int]) -> Component:
    pid = spawn_group(command, log)
    return Component(name, address, pid=pid, pgid=pid, start_time=start_time(pid), ports=ports,
                     command=command, log=str(log))


def healthy(c: Component) -> bool:
    """A real request answered: REST on the emulators, PING on Redis."""
    if c.name == REDIS:
        if c.cluster:
            return all(cluster_ok(port) for port in c.ports.values())
        return redis_ok(c.address)
    if c.name == PUBSUB:
        return http_ok(f"http://{c.address}/v1/projects/redis-spanner/topics")
    if "http" in c.ports:
        return http_ok(f"http://{LOOPBACK}:{c.ports['http']}/v1/projects/redis-spanner"
                       "/instanceConfigs")
    return tcp_ok(c.address)  # an external Spanner emulator: only its gRPC address is known


def _wait_healthy(components: list[Component], timeout: float) -> None:
    """Wait for every component to answer; external ones, already running, get a short grace."""
    start = time.monotonic()
    pending = list(components)
    while pending:
        for c in list(pending):
            if c.pid is not None and not alive(c.pid):
                raise StackError(f"{c.name} exited during start-up ({shlex.join(c.command)})"
                                 + log_tail(c.log))
            if healthy(c):
                pending.remove(c)
                continue
            waited = time.monotonic() - start
            if c.external and waited > min(timeout, EXTERNAL_GRACE_SECONDS):
                raise StackError(f"{ENV_VARS[c.name]}={c.address} does not answer; start that "
                                 f"service, or unset {ENV_VARS[c.name]} to get one started here")
            if waited > timeout:
                raise StackError(f"{c.name} not healthy after {timeout:g}s" + log_tail(c.log))
        if pending:
            time.sleep(0.1)


# --- the stack -----------------------------------------------------------------------------------

class LocalStack:
    """The local stack recorded in one state directory."""

    def __init__(self, state_dir: Path, redis_cluster: bool | None = None) -> None:
        """``redis_cluster``: True wants a cluster, False a single server, None either (a
        running one is reused; a single server is started when none runs)."""
        self.state_dir = Path(state_dir)
        self.state_file = self.state_dir / STATE_FILE
        self.redis_cluster = redis_cluster

    def up(self, timeout: float = 60) -> StackEnv:
        """Start what is missing, wait until everything answers, return where it answers."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            kept, stale = self._reusable(self._read())
            for c in stale:
                _stop(c)
            own = {n: c for n, c in kept.items() if not c.external}
            self._write(own)
            commands = self._commands([n for n in COMPONENTS if n not in kept])
            started: list[Component] = []
            try:
                started = [_spawn(name, self.state_dir / f"{name}.log", *launch)
                           for name, launch in commands.items()]
                started = [replace(c, cluster=True) if c.name == REDIS and self.redis_cluster
                           else c for c in started]
                self._write({**kept, **{c.name: c for c in started}})
                for c in started:
                    if c.cluster:
                        join_cluster(list(c.ports.values()), timeout)
                _wait_healthy([*kept.values(), *started], timeout)
            except BaseException:
                for c in started:
                    _stop(c)
                self._write(own)
                raise
            return _env_of({**kept, **{c.name: c for c in started}})

    def down(self, components: Iterable[str] | None = None) -> list[str]:
        """Stop the recorded processes (or only the named components); return what was stopped."""
        with self._lock():
            recorded = self._read()
            names = set(COMPONENTS if components is None else components)
            stopped = [n for n in COMPONENTS if n in names and n in recorded
                       and _stop(recorded.pop(n))]
            self._write(recorded)
            return stopped

    def status(self) -> dict[str, ComponentStatus]:
        recorded = self._read()
        return {name: _status_of(recorded.get(name)) for name in COMPONENTS}

    def env(self) -> StackEnv | None:
        """The recorded stack's environment, if every component of it is running."""
        recorded = self._read()
        if all(n in recorded and (recorded[n].external or _is_ours(recorded[n]))
               for n in COMPONENTS):
            return _env_of(recorded)
        return None

    def running_pids(self) -> dict[str, int]:
        """Own (non-external) components whose recorded process is running."""
        return {n: c.pid for n, c in self._read().items() if c.pid is not None and _is_ours(c)}

    def _reusable(self, recorded: dict[str, Component]
                  ) -> tuple[dict[str, Component], list[Component]]:
        """Split recorded components into those to keep and own ones to stop."""
        kept: dict[str, Component] = {}
        stale: list[Component] = []
        for name in COMPONENTS:
            own = recorded.get(name)
            external = os.environ.get(ENV_VARS[name])
            wanted = name != REDIS or self.redis_cluster in (None, own and own.cluster)
            if (own and not own.external and external in (None, own.address) and _is_ours(own)
                    and wanted):
                kept[name] = own
                continue
            if own and not own.external:
                stale.append(own)
            if external:
                kept[name] = Component(name, external, external=True)
        return kept, stale

    def _commands(self, names: list[str]) -> dict[str, Launch]:
        """Command, address and ports of each missing component; every missing tool at once."""
        commands: dict[str, Launch] = {}
        problems: list[str] = []
        for name in names:
            try:
                commands[name] = self._command(name)
            except StackError as e:
                problems.append(str(e))
        if problems:
            raise StackError("\n".join(problems))
        return commands

    def _command(self, name: str) -> Launch:
        if name == PUBSUB:
            return pubsub_launch()
        if name == SPANNER:
            return spanner_launch()
        if self.redis_cluster:
            return cluster_launch(self.state_dir)
        return redis_launch(self.state_dir)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "stack.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _read(self) -> dict[str, Component]:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise StackError(f"{self.state_file} is unreadable ({e}); stop its processes by hand "
                             "and delete it") from e
        return {name: Component(**fields) for name, fields in raw["components"].items()}

    def _write(self, components: dict[str, Component]) -> None:
        if not components:
            self.state_file.unlink(missing_ok=True)
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(
            {"components": {n: asdict(c) for n, c in components.items()}}, indent=2) + "\n")
        tmp.replace(self.state_file)


def _env_of(components: dict[str, Component]) -> StackEnv:
    redis = components[REDIS]
    return StackEnv(components[PUBSUB].address, components[SPANNER].address, redis.address,
                    redis_cluster=redis.cluster or (redis.external and _cluster_from_env()))


def _cluster_from_env() -> bool:
    return os.environ.get(CLUSTER_VAR, "").lower() in ("1", "true", "yes", "on")


def _status_of(c: Component | None) -> ComponentStatus:
    if c is None:
        return ComponentStatus(running=False, healthy=False, address=None, port=None, pid=None,
                               external=False, log=None, rest=None)
    ok = healthy(c)
    return ComponentStatus(running=ok if c.external else _is_ours(c), healthy=ok,
                           address=c.address, port=next(iter(c.ports.values()), None),
                           pid=c.pid, external=c.external, log=c.log, rest=_rest_of(c))


def _rest_of(c: Component) -> str | None:
    """The Spanner gateway serves REST on its own port; Pub/Sub's emulator on its one port."""
    if c.name == SPANNER and "http" in c.ports:
        return f"http://{LOOPBACK}:{c.ports['http']}"
    if c.name == PUBSUB:
        return f"http://{c.address}"
    return None


@contextmanager
def started(state_dir: Path | None = None, timeout: float = 60) -> Iterator[StackEnv]:
    """The stack for the length of a block: reuse what runs, stop on exit only what it started."""
    stack = LocalStack(default_state_dir() if state_dir is None else state_dir)
    before = stack.running_pids()
    env = stack.up(timeout)
    try:
        yield env
    finally:
        after = stack.running_pids()
        stack.down([n for n, pid in after.items() if before.get(n) != pid])
