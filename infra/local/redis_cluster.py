"""A local Redis Cluster: redis-server nodes with ``--cluster-enabled yes`` on free loopback
ports, joined by ``redis-cli --cluster create``. Used by ``redis-spanner dev up --redis-cluster``
and by the tests' cluster fixture.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from redis_spanner.infra.local.discovery import INSTALL_REDIS, StackError, find_redis_server
from redis_spanner.infra.local.processes import LOOPBACK, free_ports, redis_ok

PRIMARIES = 3
NODE_TIMEOUT_MS = 2000
SLOTS = 16384

Launch = tuple[list[str], str, dict[str, int]]  # command, address, ports


def find_redis_cli() -> Path:
    """redis-cli beside the redis-server in use, else on PATH."""
    beside = find_redis_server().parent / "redis-cli"
    if beside.is_file():
        return beside
    if found := shutil.which("redis-cli"):
        return Path(found)
    raise StackError(f"redis-cli not found (it joins the cluster's nodes): {INSTALL_REDIS}")


def node_command(directory: Path, port: int, bus_port: int) -> list[str]:
    """One cluster node on ``port`` (its cluster bus on ``bus_port``: the default, port + 10000,
    may be out of range or taken) that keeps nothing on disk but its nodes file."""
    return [str(find_redis_server()), "--port", str(port), "--bind", LOOPBACK, "--save", "",
            "--appendonly", "no", "--dir", str(directory), "--cluster-enabled", "yes",
            "--cluster-port", str(bus_port),
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS)]


def cluster_launch(directory: Path, nodes: int = PRIMARIES) -> Launch:
    """Every node of a cluster in one process group (a shell that waits on them), so the stack
    starts and stops it as one component. Its address is the first node's."""
    free = free_ports(2 * nodes)
    ports, buses = free[:nodes], free[nodes:]
    script = " & ".join(shlex.join(node_command(directory, p, b))
                        for p, b in zip(ports, buses, strict=True)) + " & wait"
    return (["/bin/sh", "-c", script], f"redis://{LOOPBACK}:{ports[0]}/0",
            {f"redis-{i}": p for i, p in enumerate(ports, 1)})


def join_cluster(ports: Sequence[int], timeout: float = 60.0) -> None:
    """Wait for freshly started nodes to answer, then form the cluster."""
    deadline = time.monotonic() + timeout
    while not all(redis_ok(f"redis://{LOOPBACK}:{p}/0") for p in ports):
        if time.monotonic() > deadline:
            raise StackError(f"cluster nodes on ports {', '.join(map(str, ports))} do not "
                             f"answer after {timeout:g}s")
        time.sleep(0.1)
    form_cluster(ports, timeout=max(1.0, deadline - time.monotonic()))


def form_cluster(ports: Sequence[int], replicas: int = 0, timeout: float = 60.0) -> None:
    """Join fresh nodes into one cluster (``replicas`` per primary) and wait until every node
    sees all slots served and every replica is in sync with its primary (so that it may take
    over). Raises ``StackError`` with redis-cli's words if it can't."""
    nodes = [f"{LOOPBACK}:{p}" for p in ports]
    command = [str(find_redis_cli()), "--cluster", "create", *nodes,
               "--cluster-replicas", str(replicas), "--cluster-yes"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise StackError(f"redis-cli --cluster create did not finish in {timeout:g}s") from None
    if done.returncode != 0:
        raise StackError("redis-cli --cluster create failed: "
                         + (done.stdout + done.stderr).strip().splitlines()[-1])
    deadline = time.monotonic() + timeout
    wait_cluster_ok(ports, timeout)
    while replicas and not replicas_synced(ports, replicas):
        if time.monotonic() > deadline:
            raise StackError(f"the cluster's replicas are not in sync after {timeout:g}s")
        time.sleep(0.1)


def cluster_ok(port: int) -> bool:
    """The node at ``port`` says the cluster is up with every slot assigned."""
    client = redis.Redis(LOOPBACK, port, socket_timeout=2, decode_responses=True)
    try:
        info = client.execute_command("CLUSTER", "INFO")
    except redis.RedisError:
        return False
    finally:
        client.close()
    fields = dict(line.split(":", 1) for line in str(info).split() if ":" in line)
    return fields.get("cluster_state") == "ok" and fields.get("cluster_slots_ok") == str(SLOTS)


def replicas_synced(ports: Sequence[int], replicas: int) -> bool:
    """Every primary among the nodes at ``ports`` has ``replicas`` replicas in sync with it."""
    synced = 0
    for port in ports:
        client = redis.Redis(LOOPBACK, port, socket_timeout=2, decode_responses=True)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        synced += info.get("role") == "slave" and info.get("master_link_status") == "up"
    return synced == len(ports) * replicas // (1 + replicas)


def wait_cluster_ok(ports: Sequence[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(cluster_ok(p) for p in ports):
        if time.monotonic() > deadline:
            raise StackError(f"the cluster on ports {', '.join(map(str, ports))} is not ok "
                             f"after {timeout:g}s")
        time.sleep(0.1)
