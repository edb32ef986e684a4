"""The embedded Ray cluster (no --ray-address) listens on loopback only: every listening socket of the
build's process tree (driver, GCS, raylet and object manager, workers, dashboard and runtime-env
agents, metrics export) is bound to 127.0.0.1 (or its IPv4-mapped form on an IPv6 socket).

The executor runs in a process of its own, as a build's driver does, with one task run so a worker
exists; the sockets are read from /proc (Linux) for that process and all its descendants.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

DRIVER = r"""
import os, sys
from flowprep.builder import stages
from flowprep.builder.executor import RayExecutor

ex = RayExecutor(num_cpus=1)
ex.start()
assert ex.get(ex.submit(stages.CROP, os.getpid)) != os.getpid()  # a worker process runs
print("ready", flush=True)
sys.stdin.read()  # hold the cluster until the test has looked
ex.close()
"""

# /proc/net/* state codes: TCP LISTEN, and UDP sockets bound for receiving.
LISTEN = {"tcp": "0A", "tcp6": "0A", "udp": "07", "udp6": "07"}


def _tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _address(hex_addr: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_addr)
    if v6:  # four little-endian 32-bit words
        return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return socket.inet_ntop(socket.AF_INET, raw[::-1])


def listening_sockets(pids: set[int]) -> list[tuple[str, str, int, str]]:
    """(protocol, address, port, process command) of every listening socket owned by ``pids``."""
    owner: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[target[8:-1]] = pid
    found = []
    for proto, state in LISTEN.items():
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != state or fields[9] not in owner:
                continue
            addr, port = fields[1].split(":")
            pid = owner[fields[9]]
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
                # the program's own name first: a long install path must not cut it off
                command = " ".join([os.path.basename(argv[0])] + argv[1:]).strip()[:80]
            except OSError:
                command = "?"
            found.append((proto, _address(addr, proto.endswith("6")), int(port, 16), command))
    return sorted(found)


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads sockets from Linux's /proc")
def test_every_socket_of_the_embedded_cluster_listens_on_loopback():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # the executor must set what it needs itself
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        assert driver.stdout.readline().strip() == "ready", driver.stderr.read()
        sockets = listening_sockets(_tree(driver.pid))
    finally:
        driver.stdin.close()
        driver.wait(timeout=120)
    commands = " ".join(s[3] for s in sockets)
    # the check sees the cluster: its GCS, raylet and a worker each listen
    assert "gcs_server" in commands and "raylet" in commands and "ray::" in commands, sockets
    exposed = [s for s in sockets if not _loopback(s[1])]
    assert not exposed, "\n".join(map(str, exposed))
    assert driver.returncode == 0
