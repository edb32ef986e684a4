"""The driver's guards for cluster builds: --out visible on every node, and no wait without end."""

from __future__ import annotations

import pytest

from flowprep.builder.runner import check_shared_out, Watchdog
from flowprep.errors import FlowprepError


class _Cluster:
    """Stands in for the executor where a real cluster cannot show the case (one machine shares one
    filesystem, and its nodes cannot all die under a live driver): it answers what nodes would."""

    def __init__(self, seen: dict[str, str] | None = None, cpus: float = 2.0):
        self.seen, self.cpus, self.probes = seen, cpus, []

    def on_each_node(self, fn, path):
        self.probes.append(path)
        token = fn(path)  # the real check function, run here
        return {node: token if text == "same" else text for node, text in self.seen.items()}

    def resources(self):
        return {"CPU": self.cpus, "GPU": 0.0, "nodes": 1.0}


def test_an_output_folder_one_node_cannot_see_is_refused(tmp_path):
    nodes = _Cluster({"10.0.0.1/aaaa": "same", "10.0.0.2/bbbb": ""})
    with pytest.raises(FlowprepError, match=r"not shared with every Ray node: 10\.0\.0\.2/bbbb cannot see it"):
        check_shared_out(nodes, tmp_path, nodes=2)
    assert nodes.probes and not list(tmp_path.iterdir())  # the probe was written, then removed


def test_an_output_folder_every_node_sees_passes(tmp_path):
    nodes = _Cluster({"10.0.0.1/aaaa": "same", "10.0.0.2/bbbb": "same"})
    check_shared_out(nodes, tmp_path, nodes=2)
    assert not list(tmp_path.iterdir())


def test_a_single_node_is_not_probed(tmp_path):
    nodes = _Cluster({})
    check_shared_out(nodes, tmp_path, nodes=1)
    assert not nodes.probes


def test_a_cluster_without_cpus_fails_instead_of_waiting():
    dog = Watchdog(_Cluster(cpus=0.0), stall_timeout=600, check_every=0.0)
    with pytest.raises(FlowprepError, match="no live node with a CPU"):
        dog.check()
    Watchdog(_Cluster(cpus=1.0), stall_timeout=600, check_every=0.0).check()  # CPUs left: keep waiting


def test_no_progress_for_the_stall_timeout_fails():
    dog = Watchdog(_Cluster(cpus=2.0), stall_timeout=0.0)
    with pytest.raises(FlowprepError, match=r"no clip finished for \d+ s \(--stall-timeout\)"):
        dog.check()


def test_a_build_refused_by_the_lock_touches_nothing(tmp_path):
    """A build that finds the folder locked stops before its start-up cleanup: the holder's in-flight
    temporary shard and its manifest stay (the second build used to delete them)."""
    from flowprep.builder import build
    from flowprep.shards.lock import BuildLock

    src = tmp_path / "src"
    src.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    in_flight = out / ".train-00000.h5.0123456789abcdef.tmp"
    in_flight.write_bytes(b"half a shard")
    (out / "manifest.json").write_text("{}")
    with BuildLock(out):
        with pytest.raises(FlowprepError, match="being written by another build"):
            build(src, out, progress=False)
    assert in_flight.read_bytes() == b"half a shard" and (out / "manifest.json").read_text() == "{}"
