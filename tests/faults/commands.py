"""``redis-spanner`` commands run as real processes for the fault tests: each in a process
group of its own (killed whole afterwards), its stderr collected line by line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress

from redis_spanner.infra.local.processes import free_ports

STOP_WITHIN_SECONDS = 10.0
UNAUTHENTICATED_PUSH = {"REDIS_SPANNER_PUSH_AUTH": "off"}
"""``serve`` against the emulators: the tests' pushes carry no OIDC token."""


class Command:
    """``redis-spanner <args>`` in a process group of its own, its stderr collected."""

    def __init__(self, args: list[str], environ: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "redis_spanner.infra.cli", *args],
            env={**os.environ, **(UNAUTHENTICATED_PUSH if args[:1] == ["serve"] else {}),
                 **environ}, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace"))

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self) -> float:
        """SIGTERM; the seconds until it exited (the test fails if it does not in time)."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_WITHIN_SECONDS + 20)
        finally:
            self.kill()
        took = time.monotonic() - sent
        assert took < STOP_WITHIN_SECONDS, f"stopped {took:.1f}s after SIGTERM:\n" + "".join(
            self.lines[-20:])
        assert self.process.returncode in (0, -signal.SIGTERM), "".join(self.lines[-20:])
        assert not self.said("Traceback"), "".join(self.lines)
        print(f"stopped {took:.2f}s after SIGTERM")
        return took

    def wait_exit(self, seconds: float) -> int:
        """The exit status of a process that ends by itself within ``seconds``."""
        status = self.process.wait(timeout=seconds)
        self._reader.join(timeout=5)
        return status

    def stderr(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextmanager
def command(args: list[str], environ: Mapping[str, str] | None = None) -> Iterator[Command]:
    started = Command(args, environ or {})
    try:
        yield started
    finally:
        started.kill()


def dead_address() -> str:
    """A loopback address nothing listens on."""
    (port,) = free_ports(1)
    return f"127.0.0.1:{port}"


def serve_args() -> tuple[list[str], str]:
    (port,) = free_ports(1)
    return ["serve", "--host", "127.0.0.1", "--port", str(port)], f"http://127.0.0.1:{port}"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
