"""redis-servers of a test's own: a local cluster, and a TLS server with ACL users, with the
certificate authority the test generates for it."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from redis.cluster import RedisCluster
from redis_spanner.infra.local.discovery import find_redis_server
from redis_spanner.infra.local.faults import OwnProcess
from redis_spanner.infra.local.processes import LOOPBACK, free_ports
from redis_spanner.infra.local.redis_cluster import PRIMARIES, form_cluster, node_command

ADMIN = "admin"
ADMIN_PASSWORD = "admin-secret-7c1f"


def worker_acl(namespace: str) -> list[str]:
    """The ACL rules of the consumers' user: its namespace's keys only, and only the commands
    the consumers send (the guard's script runs TYPE, HMGET, HEXISTS, DEL, HSET and PEXPIRE,
    the lease release GET and DEL, as the user)."""
    return [f"~{namespace}:*", "resetchannels", "-@all", "+evalsha", "+script|load",
            "+hgetall", "+hget", "+hmget", "+hexists", "+hset", "+del", "+pexpire", "+get",
            "+set", "+type", "+unlink", "+scan", "+ping", "+publish", "+wait"]


# --- a cluster -----------------------------------------------------------------------------------

@dataclass
class LocalCluster:
    nodes: list[OwnProcess]

    @property
    def ports(self) -> list[int]:
        return [n.ports["redis"] for n in self.nodes]

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.ports[0]}/0"

    def client(self) -> RedisCluster:
        return RedisCluster(LOOPBACK, self.ports[0], decode_responses=True)


def start_cluster(directory: Path, primaries: int = PRIMARIES, replicas: int = 0
                  ) -> Generator[LocalCluster, None, None]:
    """``primaries`` cluster nodes (and ``replicas`` per primary), each a process group of its
    own, joined into a cluster; all stopped when the generator is closed."""
    nodes: list[OwnProcess] = []
    count = primaries * (1 + replicas)
    try:
        free = free_ports(2 * count)
        for port, bus in zip(free[:count], free[count:], strict=True):
            node = OwnProcess("redis", node_command(directory, port, bus),
                              f"redis://{LOOPBACK}:{port}/0", {"redis": port},
                              directory / f"node-{port}.log")
            nodes.append(node)
            node.start()
        form_cluster([n.ports["redis"] for n in nodes], replicas=replicas)
        yield LocalCluster(nodes)
    finally:
        for node in nodes:
            node.stop()


# --- TLS and ACL ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path, name: str = "test") -> TlsFiles:
    """A fresh CA, a server certificate for 127.0.0.1 and localhost, and a client certificate,
    all signed by that CA (PEM files in ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: x509.ObjectIdentifier, san: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                   .issuer_name(ca_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
                critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    files = TlsFiles(*(directory / f"{name}-{part}.pem" for part in
                       ("ca", "server-cert", "server-key", "client-cert", "client-key")))
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = leaf("redis-server", ExtendedKeyUsageOID.SERVER_AUTH, True)
    client_cert, client_key = leaf("redis-spanner", ExtendedKeyUsageOID.CLIENT_AUTH, False)
    files.server_cert.write_bytes(server_cert)
    files.server_key.write_bytes(server_key)
    files.client_cert.write_bytes(client_cert)
    files.client_key.write_bytes(client_key)
    return files


def tls_redis(directory: Path, files: TlsFiles, *, mutual: bool) -> OwnProcess:
    """A redis-server that speaks only TLS (``--port 0``), requires client certificates when
    ``mutual``, refuses the default user, and has an ``admin`` user for the test itself."""
    (port,) = free_ports(1)
    command = [str(find_redis_server()), "--port", "0", "--tls-port", str(port),
               "--bind", LOOPBACK, "--save", "", "--appendonly", "no", "--dir", str(directory),
               "--tls-cert-file", str(files.server_cert),
               "--tls-key-file", str(files.server_key),
               "--tls-ca-cert-file", str(files.ca),
               "--tls-auth-clients", "yes" if mutual else "no",
               "--user", "default", "off",
               "--user", ADMIN, "on", f">{ADMIN_PASSWORD}", "~*", "&*", "+@all"]
    return OwnProcess("redis", command, f"rediss://{LOOPBACK}:{port}/0", {"redis": port},
                      directory / f"redis-tls-{port}.log")


def admin_client(server: OwnProcess, files: TlsFiles) -> redis.Redis:
    return redis.Redis(LOOPBACK, server.ports["redis"], username=ADMIN, password=ADMIN_PASSWORD,
                       ssl=True, ssl_ca_certs=str(files.ca), ssl_certfile=str(files.client_cert),
                       ssl_keyfile=str(files.client_key), decode_responses=True,
                       socket_timeout=5)
