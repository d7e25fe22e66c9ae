"""A local stand-in for Google's token issuer: an RSA key, its self-signed certificate served
as Google's certificates JSON on loopback, and ID tokens signed with it."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

KEY_ID = "test-key-1"
AUDIENCE = "https://push.example.test/push"
PUSH_ACCOUNT = "pubsub-push@example-project.iam.gserviceaccount.com"


@dataclass
class Issuer:
    """Signs tokens with its own key; ``certs`` is what its certificates URL serves."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    key_id: str = KEY_ID

    @property
    def certs(self) -> dict[str, str]:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test issuer")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=1))
                .sign(self.key, hashes.SHA256()))
        return {self.key_id: cert.public_bytes(serialization.Encoding.PEM).decode()}

    def token(self, **overrides: Any) -> str:
        """A token as Pub/Sub sends it; keyword arguments replace claims (None drops one)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": AUDIENCE, "iss": "https://accounts.google.com", "email": PUSH_ACCOUNT,
            "email_verified": True, "sub": "1234567890", "iat": now, "exp": now + 3600,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        pem = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        signer = crypt.RSASigner.from_string(pem, key_id=self.key_id)
        token: bytes = jwt.encode(signer, claims)
        return token.decode()


@dataclass
class CertsServer:
    url: str
    fetches: list[float]


@contextmanager
def serving_certs(certs: dict[str, str], max_age: int = 3600) -> Iterator[CertsServer]:
    """Serve ``certs`` as JSON on a loopback port, with ``Cache-Control: max-age``."""
    body = json.dumps(certs).encode()
    fetches: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", f"public, max-age={max_age}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield CertsServer(f"http://127.0.0.1:{server.server_address[1]}/certs", fetches)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
