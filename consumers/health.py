"""The pull worker's health endpoint, for Cloud Run's startup and liveness probes.

``GET /healthz`` answers 200 while every check passes and 503, naming the failed checks, as soon
as one fails: a pull loop that ended without being asked to stop, or a Redis that does not
answer PING. ``GET /metrics`` on the same port serves the Prometheus metrics, so one port
(Cloud Run's ``$PORT``) is enough for probes and scraping.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""A health check: None when healthy, else one short line saying what is wrong."""


class Pingable(Protocol):
    def ping(self) -> object: ...


def redis_check(client: Pingable) -> Check:
    """Fails while Redis does not answer PING (within the client's socket timeout)."""
    def check() -> str | None:
        try:
            client.ping()
        except Exception as e:
            return f"redis unreachable ({type(e).__name__})"
        return None
    return check


def loops_check(dead_loops: Callable[[], Sequence[str]]) -> Check:
    """Fails once any pull loop has ended on its own."""
    def check() -> str | None:
        dead = dead_loops()
        return f"pull loop(s) stopped: {', '.join(dead)}" if dead else None
    return check


def problems(checks: Sequence[Check]) -> list[str]:
    return [p for p in (check() for check in checks) if p is not None]


class HealthServer:
    """``/healthz`` and ``/metrics`` on ``host:port``, served from a daemon thread."""

    def __init__(self, checks: Sequence[Check], port: int, host: str = "0.0.0.0") -> None:
        self.checks = list(checks)
        handler = _handler(self.checks)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="healthz",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(checks: Sequence[Check]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                failed = problems(checks)
                body = json.dumps({"ok": not failed, "problems": failed}).encode()
                self._send(503 if failed else 200, "application/json", body)
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest())
            else:
                self._send(404, "application/json", b'{"error": "not found"}')

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("healthz: " + format, *args)

    return Handler
