"""A real multi-node Ray cluster on this machine, over loopback, for tests and benchmarks.

The nodes run in a child process (ray.cluster_utils.Cluster: each node its own raylet and object
store and CPU count), every address 127.0.0.1. Ray rewrites a loopback address to the host's
network address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and `ray start` then refuses to add a
worker node, so the cluster is started from Python with that variable set for every process.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the clone's root (tests/ lives in it)
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # keep 127.0.0.1 as 127.0.0.1 in every Ray process

# Runs in the child process: start a head and more nodes with the CPUs asked for, print their
# addresses, then obey one command per line on stdin ("kill N": SIGKILL every process of node N,
# the head being 0). EOF stops the cluster.
NODES_SCRIPT = r"""
import json, os, sys
from ray._private.utils import get_ray_address_file
from ray.cluster_utils import Cluster

spec = json.loads(sys.argv[1])
# Cluster writes the head's address under Ray's default temp dir whatever temp_dir says, and fails
# where no Ray ran before on this machine (a fresh CI box): make that folder first.
os.makedirs(os.path.dirname(get_ray_address_file(None)), exist_ok=True)
node = dict(node_ip_address="127.0.0.1", include_dashboard=False)
head_cpus, *worker_cpus = spec["cpus"]
cluster = Cluster(initialize_head=True, head_node_args={**node, "num_cpus": head_cpus, "temp_dir": spec["temp_dir"]})
nodes = [cluster.head_node] + [cluster.add_node(**node, num_cpus=cpus) for cpus in worker_cpus]
cluster.wait_for_nodes()
print(json.dumps({"address": cluster.address, "nodes": [[n.node_id, n.node_ip_address] for n in nodes]}), flush=True)
for line in sys.stdin:
    verb, index = line.split()
    cluster.remove_node(nodes[int(index)], allow_graceful=False)
    print(json.dumps({"killed": int(index)}), flush=True)
cluster.shutdown()
"""


class LoopbackCluster:
    """A Ray head and more nodes on 127.0.0.1 with ``cpus[i]`` CPUs each, in a process group of their
    own; ``start()`` waits for them, ``stop()`` always leaves nothing behind."""

    def __init__(self, cpus: tuple[int, ...] = (1, 1)):
        self.temp_dir = tempfile.mkdtemp(prefix="fpray")  # short: Ray's socket paths must stay under 108 bytes
        self.log = Path(self.temp_dir) / "nodes.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", NODES_SCRIPT, json.dumps({"temp_dir": self.temp_dir, "cpus": list(cpus)})],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                env={**os.environ, **LOOPBACK_ENV}, start_new_session=True,
            )
        self.address = ""
        self.node_ids: list[str] = []
        self.node_ips: list[str] = []

    def __enter__(self) -> "LoopbackCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 90) -> "LoopbackCluster":
        info = json.loads(self._reply(timeout))
        self.address = info["address"]
        self.node_ids = [n[0] for n in info["nodes"]]
        self.node_ips = [n[1] for n in info["nodes"]]
        return self

    def kill_node(self, index: int) -> None:
        self.proc.stdin.write(f"kill {index}\n")
        self.proc.stdin.flush()
        assert json.loads(self._reply(30)) == {"killed": index}

    def _reply(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"the Ray nodes did not answer within {timeout} s (exit {self.proc.poll()}):\n{tail}")
        return line

    def stop(self) -> None:
        """Ask the nodes to stop; whatever is left after a few seconds is killed with its group."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, OSError):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
