"""`flowprep build --ray-address` on a real Ray cluster of two nodes on this machine, over loopback
(tests/raycluster.py). The builds run through the CLI, as a user would, and are checked clip by
clip: no clip lost, none duplicated, whichever node did the work or died doing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowprep.dataset import ShardFile
from flowprep.errors import EXIT_OK
from tests.raycluster import LOOPBACK_ENV, REPO, LoopbackCluster

SHARD_SIZE = 2


@pytest.fixture(scope="module")
def cluster():
    nodes = LoopbackCluster(cpus=(1, 1))
    try:
        yield nodes.start()
    finally:
        nodes.stop()


def _build_cmd(src: Path, out: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowprep.cli", "build", "--src", str(src), "--out", str(out), "--flow", "dis",
            "--shard-size", str(SHARD_SIZE), "--ray-address", address, *extra]


def _run_build(cmd: list[str], timeout: float = 100) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **LOOPBACK_ENV})


def _json_report(stdout: str) -> dict:
    """The --json report: stdout holds it alone, even when Ray reports a dead node."""
    return json.loads(stdout)


def _clip_ids(out: Path) -> list[str]:
    """Every clip id in every committed shard."""
    ids = []
    for entry in json.loads((out / "manifest.json").read_text())["shards"]:
        with ShardFile(out / entry["name"]) as shard:
            ids += list(shard.meta["clip_id"])
    return ids


def _expected_ids(src: Path) -> list[str]:
    return sorted(str(p.relative_to(src).with_suffix("")) for p in src.rglob("*.mp4"))


def _shards(out: Path) -> dict[str, str]:
    """Committed shard -> sha256, after checking each file still has the bytes the manifest names."""
    entries = json.loads((out / "manifest.json").read_text())["shards"]
    for entry in entries:
        assert hashlib.sha256((out / entry["name"]).read_bytes()).hexdigest() == entry["sha256"], entry["name"]
    return {e["name"]: e["sha256"] for e in entries}


def _wait_for_commit(out: Path, proc: subprocess.Popen, timeout: float = 60) -> set[str]:
    """Wait until the build at ``out`` has committed a shard; return the committed names."""
    deadline = time.time() + timeout
    manifest = out / "manifest.json"
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists():
            shards = json.loads(manifest.read_text())["shards"]
            if shards:
                return {s["name"] for s in shards}
        time.sleep(0.05)
    raise AssertionError(f"no shard committed within {timeout} s (build exit status {proc.poll()})")


@pytest.fixture(scope="module")
def cluster_build(cluster, lrw_tree, tmp_path_factory):
    """A whole build on the two-node cluster, progress bar on: (out, JSON report, stderr)."""
    out = tmp_path_factory.mktemp("cluster_shards")
    done = _run_build(_build_cmd(lrw_tree, out, cluster.address, "--json"))
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    return out, _json_report(done.stdout), done.stderr


@pytest.mark.timeout(120)
def test_build_spreads_over_every_node(cluster, cluster_build, lrw_tree):
    out, report, stderr = cluster_build
    assert cluster.address.startswith("127.0.0.1:") and set(cluster.node_ips) == {"127.0.0.1"}
    expected = _expected_ids(lrw_tree)
    assert sorted(_clip_ids(out)) == expected  # every clip exactly once
    # every node did work, and the per-node counts add up to the whole build
    by_id = {key.rsplit("/", 1)[-1]: count for key, count in report["nodes"].items()}
    assert set(by_id) == {node_id[:8] for node_id in cluster.node_ids}
    assert all(count > 0 for count in by_id.values()) and sum(by_id.values()) == len(expected)
    assert report["clips"] == len(expected)
    summary = next(line for line in stderr.splitlines() if line.startswith("clips per node: "))
    for key, count in report["nodes"].items():
        assert f"{key} {count}" in summary
    assert "build on 2 nodes: 100%" in stderr and f"{len(expected)}/{len(expected)}" in stderr  # one bar, both nodes


# Run as a driver of its own, as the CLI is: a pytest process that already ran embedded local
# clusters can hang connecting to another one.
PROBE_SCRIPT = r"""
import json, os, sys
from pathlib import Path

from flowprep.builder.executor import RayExecutor
from flowprep.builder.runner import check_shared_out

with RayExecutor(address=sys.argv[1]) as ex:
    pids = ex.on_each_node(os.getpid)
    check_shared_out(ex, Path(sys.argv[2]), nodes=len(pids))
print(json.dumps({"driver": os.getpid(), "pids": pids}))
"""


@pytest.mark.timeout(120)
def test_every_node_is_reached_and_sees_the_output(cluster, tmp_path):
    """The check behind "--out must be shared": a probe written by the driver is read back on each node."""
    done = subprocess.run([sys.executable, "-c", PROBE_SCRIPT, cluster.address, str(tmp_path)], capture_output=True,
                          text=True, timeout=100, cwd=REPO, env={**os.environ, **LOOPBACK_ENV})
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    pids = seen["pids"]
    assert {label.rsplit("/", 1)[1] for label in pids} == {node_id[:8] for node_id in cluster.node_ids}
    assert len(set(pids.values())) == 2 and seen["driver"] not in pids.values()  # ran on the nodes
    assert not list(tmp_path.iterdir())  # one filesystem: the check passed and left no probe behind


@pytest.mark.timeout(120)
def test_killed_driver_resumes_on_the_cluster(cluster, cluster_build, lrw_tree, tmp_path):
    """SIGKILL the driver after its first commit while the cluster lives on: what it committed is
    whole, nothing half-written looks finished, and a rerun ends byte for byte as a clean build."""
    out = tmp_path / "out"
    cmd = _build_cmd(lrw_tree, out, cluster.address, "--no-progress", "--json")
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **LOOPBACK_ENV}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for_commit(out, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    committed = _shards(out)
    clean = _shards(cluster_build[0])
    assert 0 < len(committed) < len(clean)  # killed mid-build
    for path in out.glob("*.h5"):  # a shard under its final name is complete, committed or not
        with ShardFile(path) as shard:
            assert len(shard) > 0
    rerun = _run_build(cmd)
    assert rerun.returncode == EXIT_OK, rerun.stderr[-2000:]
    assert _json_report(rerun.stdout)["skipped_shards"] == len(committed)
    assert _shards(out) == clean
    assert sorted(_clip_ids(out)) == _expected_ids(lrw_tree)
    assert not list(out.glob(".*.tmp"))


@pytest.mark.timeout(120)
def test_killed_worker_node_loses_no_clip(cluster, cluster_build, lrw_tree, tmp_path):
    """SIGKILL every process of the worker node mid-build. At the first commit about ten clips are
    still queued for two CPUs, so the node dies busy and holding results: Ray reruns its tasks on the
    head and rebuilds the lost results, and the build ends whole, each clip once. (Runs last: the
    cluster keeps only its head.)"""
    out = tmp_path / "out"
    cmd = _build_cmd(lrw_tree, out, cluster.address, "--no-progress", "--json")
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **LOOPBACK_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        committed = _wait_for_commit(out, proc)
        cluster.kill_node(1)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    clean = _shards(cluster_build[0])
    assert 0 < len(committed) < len(clean)  # the node died mid-build
    assert proc.returncode == EXIT_OK, stderr[-2000:]
    report = _json_report(stdout)
    expected = _expected_ids(lrw_tree)
    assert report["complete"] and report["clips"] == len(expected) and not report["shard_errors"]
    assert sum(report["nodes"].values()) == len(expected)
    assert sorted(_clip_ids(out)) == expected
    assert _shards(out) == clean
    assert not list(out.glob(".*.tmp"))
