"""The local stack: the Pub/Sub and Spanner emulators and a redis-server on free loopback ports.

``LocalStack(state_dir).up()`` starts whatever is not running yet and records each process in
``state_dir/stack.json``; ``down()`` stops exactly the recorded processes and nothing else. A
component whose variable (PUBSUB_EMULATOR_HOST, SPANNER_EMULATOR_HOST, REDIS_URL) is already set
in the environment is external: it is used as it is and never stopped. Processes are told apart
by their start time in /proc, so this runs on Linux.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlsplit

PUBSUB, SPANNER, REDIS = "pubsub", "spanner", "redis"
COMPONENTS = (PUBSUB, SPANNER, REDIS)
ENV_VARS = {PUBSUB: "PUBSUB_EMULATOR_HOST", SPANNER: "SPANNER_EMULATOR_HOST", REDIS: "REDIS_URL"}
LOOPBACK = "127.0.0.1"
STATE_FILE = "stack.json"
STOP_GRACE_SECONDS = 5.0
EXTERNAL_GRACE_SECONDS = 10.0
# Every test creates its own database; the emulator's default cap is 100 per instance.
MAX_DATABASES = 10_000

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


@dataclass(frozen=True)
class StackEnv:
    """Where the running stack answers, in the form the clients read from the environment."""

    pubsub_emulator_host: str
    spanner_emulator_host: str
    redis_url: str

    def exports(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.pubsub_emulator_host,
                "SPANNER_EMULATOR_HOST": self.spanner_emulator_host,
                "REDIS_URL": self.redis_url}


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


Launch = tuple[list[str], str, dict[str, int]]  # command, address, ports


class ComponentStatus(TypedDict):
    running: bool
    healthy: bool
    address: str | None
    port: int | None
    pid: int | None
    external: bool
    log: str | None


def default_state_dir() -> Path:
    if explicit := os.environ.get("REDIS_SPANNER_STATE_DIR"):
        return Path(explicit)
    if xdg := os.environ.get("XDG_STATE_HOME"):
        return Path(xdg) / "redis-spanner"
    return Path.home() / ".local" / "state" / "redis-spanner"


# --- discovery -----------------------------------------------------------------------------------

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


# --- processes -----------------------------------------------------------------------------------

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # reaped by down(), so no zombie lingers


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _is_ours(c: Component) -> bool:
    return c.pid is not None and _alive(c.pid) and _start_time(c.pid) == c.start_time


def _reap(pid: int, timeout: float = 0) -> None:
    """Collect the exit status of a child of this process (a multi-threaded one takes a moment)."""
    child = _CHILDREN.pop(pid, None)
    if child is None:
        return
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        _CHILDREN[pid] = child


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if not group_members(pgid):
            _reap(pgid, seconds)
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _stop(c: Component) -> bool:
    """Stop a recorded process group; True if anything of it was still running."""
    if c.external or c.pgid is None or c.pid is None:
        return False
    # While any member lives, the kernel does not reuse the group's id, so a group whose leader
    # is gone is still ours; a live leader with another start time is somebody else's process.
    if not _is_ours(c) and (_alive(c.pid) or not group_members(c.pgid)):
        _reap(c.pid)
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(c.pgid, sig)
        if _wait_group_gone(c.pgid, STOP_GRACE_SECONDS):
            return True
    raise StackError(f"{c.name}: process group {c.pgid} survived SIGKILL")


def _spawn(name: str, log: Path, command: list[str], address: str,
           ports: dict[str, int]) -> Component:
    with log.open("wb") as out:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=log.parent, start_new_session=True)
    _CHILDREN[child.pid] = child
    return Component(name, address, pid=child.pid, pgid=child.pid,
                     start_time=_start_time(child.pid), ports=ports, command=command, log=str(log))


def _tail(log: str | None, lines: int = 20) -> str:
    if not log:
        return ""
    with suppress(OSError):
        text = Path(log).read_text(errors="replace").splitlines()[-lines:]
        return f"\nlast lines of {log}:\n" + "\n".join(text)
    return ""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so the kernel hands out different ones)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# --- health --------------------------------------------------------------------------------------

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy


def _http_ok(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _redis_ok(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or LOOPBACK, parts.port or 6379), 2) as s:
            if parts.scheme == "rediss":
                return True  # a TLS server answered; PING would need its certificates
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def _tcp_ok(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), 2):
            return True
    except (OSError, ValueError):
        return False


def healthy(c: Component) -> bool:
    """A real request answered: REST on the emulators, PING on Redis."""
    if c.name == REDIS:
        return _redis_ok(c.address)
    if c.name == PUBSUB:
        return _http_ok(f"http://{c.address}/v1/projects/redis-spanner/topics")
    if "http" in c.ports:
        return _http_ok(f"http://{LOOPBACK}:{c.ports['http']}/v1/projects/redis-spanner"
                        "/instanceConfigs")
    return _tcp_ok(c.address)  # an external Spanner emulator: only its gRPC address is known


def _wait_healthy(components: list[Component], timeout: float) -> None:
    """Wait for every component to answer; external ones, already running, get a short grace."""
    start = time.monotonic()
    pending = list(components)
    while pending:
        for c in list(pending):
            if c.pid is not None and not _alive(c.pid):
                raise StackError(f"{c.name} exited during start-up ({shlex.join(c.command)})"
                                 + _tail(c.log))
            if healthy(c):
                pending.remove(c)
                continue
            waited = time.monotonic() - start
            if c.external and waited > min(timeout, EXTERNAL_GRACE_SECONDS):
                raise StackError(f"{ENV_VARS[c.name]}={c.address} does not answer; start that "
                                 f"service, or unset {ENV_VARS[c.name]} to get one started here")
            if waited > timeout:
                raise StackError(f"{c.name} not healthy after {timeout:g}s" + _tail(c.log))
        if pending:
            time.sleep(0.1)


# --- the stack -----------------------------------------------------------------------------------

class LocalStack:
    """The local stack recorded in one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_file = self.state_dir / STATE_FILE

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
                self._write({**kept, **{c.name: c for c in started}})
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
            if own and not own.external and external in (None, own.address) and _is_ours(own):
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
            emulator = find_pubsub_emulator()
            find_java()
            (port,) = free_ports(1)
            return ([str(emulator), f"--host={LOOPBACK}", f"--port={port}"],
                    f"{LOOPBACK}:{port}", {"grpc": port})
        if name == SPANNER:
            gateway = find_spanner_emulator()
            grpc, http = free_ports(2)
            return ([str(gateway), "--hostname", LOOPBACK, "--grpc_port", str(grpc),
                     "--http_port", str(http), f"--override_max_databases_per_instance="
                     f"{MAX_DATABASES}"], f"{LOOPBACK}:{grpc}", {"grpc": grpc, "http": http})
        server = find_redis_server()
        (port,) = free_ports(1)
        return ([str(server), "--port", str(port), "--bind", LOOPBACK, "--save", "",
                 "--appendonly", "no", "--dir", str(self.state_dir)],
                f"redis://{LOOPBACK}:{port}/0", {"redis": port})

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
    return StackEnv(components[PUBSUB].address, components[SPANNER].address,
                    components[REDIS].address)


def _status_of(c: Component | None) -> ComponentStatus:
    if c is None:
        return ComponentStatus(running=False, healthy=False, address=None, port=None, pid=None,
                               external=False, log=None)
    ok = healthy(c)
    return ComponentStatus(running=ok if c.external else _is_ours(c), healthy=ok,
                           address=c.address, port=next(iter(c.ports.values()), None),
                           pid=c.pid, external=c.external, log=c.log)


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
