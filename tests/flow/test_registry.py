"""The flow registry: each backend says where a build runs it and builds itself from a FlowConfig;
pairs are cut into batches across clip boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from flowprep.config import FlowConfig
from flowprep.errors import FlowprepError
from flowprep.flow import available_backends, backend_class, make, pair_batches
from flowprep.flow.base import RUNS_IN


def test_every_backend_declares_where_it_runs():
    assert available_backends() == ["dis", "farneback", "ptlflow:MODEL", "pwcnet"]
    for name in ("dis", "farneback", "pwcnet", "ptlflow:raft_small"):
        cls = backend_class(name)
        assert cls.runs_in in RUNS_IN and set(cls.devices) <= {"cpu", "cuda"}
    assert backend_class("dis").runs_in == "crop" and backend_class("dis").devices == ("cpu",)
    assert backend_class("pwcnet").runs_in == "actor" and "cuda" in backend_class("pwcnet").devices
    assert backend_class("ptlflow:neuflow2").runs_in == "actor" and "cuda" in backend_class("ptlflow:neuflow2").devices


def test_a_backend_builds_itself_from_the_build_config():
    dis = make(FlowConfig(backend="dis", preset="fast", batch_pairs=7))
    assert dis.name == "dis" and dis.options == {"preset": "fast", "threads": 1}
    assert make(FlowConfig(backend="farneback")).options == {"threads": 1}
    cfg = FlowConfig(backend="pwcnet", ckpt="x", device="cpu", batch_pairs=9, precision="bf16")
    assert backend_class("pwcnet").options_from(cfg) == {"ckpt": "x", "device": "cpu", "batch_pairs": 9, "dtype": "bf16"}
    assert backend_class("ptlflow:raft_small").options_from(cfg) == {"ckpt": "x", "device": "cpu", "batch_pairs": 9}


@pytest.mark.parametrize("name, message", [
    ("nope", r"unknown flow backend 'nope'; available: dis, farneback, ptlflow:MODEL, pwcnet"),
    ("ptlflow", r"needs a model: --flow ptlflow:MODEL \(e\.g\. raft_small\)"),
    ("dis:fast", r"'dis' takes no model; use --flow dis"),
])
def test_names_that_build_nothing_say_what_to_write(name, message):
    with pytest.raises(FlowprepError, match=message):
        backend_class(name)


def test_pairs_are_cut_across_clip_boundaries():
    # clips of 3, 0, 10 and 2 pairs in batches of 4: the long clip spans three batches, and shares
    # its first and last with its neighbours; the clip without pairs takes no room
    assert list(pair_batches([3, 0, 10, 2], 4)) == [
        [(0, 0, 3), (2, 0, 1)], [(2, 1, 5)], [(2, 5, 9)], [(2, 9, 10), (3, 0, 2)]]
    rng = np.random.default_rng(0)
    for _ in range(50):
        counts = rng.integers(0, 40, rng.integers(1, 8)).tolist()
        size = int(rng.integers(1, 30))
        batches = list(pair_batches(counts, size))
        sizes = [sum(b - a for _, a, b in batch) for batch in batches]
        assert all(0 < s <= size for s in sizes) and all(s == size for s in sizes[:-1])  # full but the last
        covered = [(c, i) for batch in batches for c, a, b in batch for i in range(a, b)]
        assert covered == [(c, i) for c, n in enumerate(counts) for i in range(n)]  # every pair once, in order
    with pytest.raises(FlowprepError, match="batch_pairs must be at least 1"):
        list(pair_batches([3], 0))
