"""Server processes: each started as the leader of a process group of its own, known again by
its start time (a pid alone may be reused), and stopped group and all; free loopback ports, and
the probes that ask a server whether it answers.

Process tables are read through psutil, so this works wherever psutil and POSIX process groups
do (Linux and macOS); only Linux is tested.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from redis_spanner.infra.local.discovery import StackError

LOOPBACK = "127.0.0.1"
STOP_GRACE_SECONDS = 5.0

# --- process groups ------------------------------------------------------------------------------

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # reaped once stopped, so no zombie lingers


def start_time(pid: int) -> str | None:
    """When ``pid`` started (as psutil reports it, stable for the process's life), or None if
    there is no such process."""
    try:
        return repr(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def is_same_process(pid: int, started: str | None) -> bool:
    """``pid`` is alive and is the process that started at ``started``, not a reuse of its pid."""
    return alive(pid) and start_time(pid) == started


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
    return members


def spawn_group(command: list[str], log: Path) -> int:
    """Start ``command`` leading a session (and process group) of its own, its output in
    ``log``, in the log's directory; its pid, which is also its group's id."""
    with log.open("wb") as out:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=log.parent, start_new_session=True)
    _CHILDREN[child.pid] = child
    return child.pid


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


def stop_group(name: str, pid: int, pgid: int, started: str | None) -> bool:
    """Stop the process group of a process that started at ``started``; True if anything of it
    was still running. Raises ``StackError`` if the group survives SIGKILL."""
    # While any member lives, the kernel does not reuse the group's id, so a group whose leader
    # is gone is still ours; a live leader with another start time is somebody else's process.
    if not is_same_process(pid, started) and (alive(pid) or not group_members(pgid)):
        _reap(pid)
        return False
    signal_group(name, pgid, (signal.SIGTERM, signal.SIGKILL))
    return True


def signal_group(name: str, pgid: int, signals: Sequence[signal.Signals]) -> None:
    """Send each signal to the group in turn until none of it is left (each gets a grace
    period). Raises ``StackError`` if the group outlives the last one."""
    for sig in signals:
        with suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        if _wait_group_gone(pgid, STOP_GRACE_SECONDS):
            return
    raise StackError(f"{name}: process group {pgid} survived {signals[-1].name}")


def log_tail(log: str | None, lines: int = 20) -> str:
    """The last lines of a log, introduced on a line of their own; empty if there are none."""
    if not log:
        return ""
    with suppress(OSError):
        text = Path(log).read_text(errors="replace").splitlines()[-lines:]
        return f"\nlast lines of {log}:\n" + "\n".join(text)
    return ""


# --- ports and probes ----------------------------------------------------------------------------

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


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy


def http_ok(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def redis_ok(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or LOOPBACK, parts.port or 6379), 2) as s:
            if parts.scheme == "rediss":
                return True  # a TLS server answered; PING would need its certificates
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def tcp_ok(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), 2):
            return True
    except (OSError, ValueError):
        return False
