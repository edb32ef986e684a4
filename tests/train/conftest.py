"""Real shards for the trainer's tests, built once per session by `flowprep.builder.build` (dlib crops,
DIS flow) on a local Ray cluster that lives only as long as the build.

The crops are 48x48 (the same field of view as the default 112x112: the face is scaled to match),
so a tiny network trains a step in well under a second on two cores: 3D convolutions' backward
pass on CPU is slow, and at 112x112 one step of six clips takes 5-20 s there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowprep.builder import build
from flowprep.builder.executor import RayExecutor
from flowprep.config import BuildConfig, FlowConfig, RoiConfig
from flowprep.train import TrainConfig

ROI = 48
DIS = BuildConfig(roi=RoiConfig(size=ROI, face_width=140.0 * ROI / 112), flow=FlowConfig(backend="dis", preset="medium"),
                  shard_size=4, workers=2)


@pytest.fixture(scope="session")
def lrw_shards(lrw_tree, tmp_path_factory) -> Path:
    """3 words x (2 train, 1 val, 1 test) LRW-shaped clips of 29 frames: real crops and DIS flow
    (GRID faces when ../shared/data/grid is there, else the synthetic photo clips: see lrw_tree)."""
    out = tmp_path_factory.mktemp("train_shards")
    with RayExecutor(num_cpus=2) as ex:
        report = build(lrw_tree, out, DIS, progress=False, executor=ex)
    assert report.exit_code == 0 and report.clips == 12, report.lines()
    return out


def tiny(shards: Path, out: Path, **changes) -> TrainConfig:
    """A configuration small enough to train in seconds on two cores."""
    base = dict(shards=str(shards), out=str(out), width=0.0625, hidden=16, dropout=0.0, weight_decay=0.0,
                warmup_epochs=0, batch_size=6, lr=1e-2, crop=ROI - 8, workers=0, progress=False)
    return TrainConfig(**{**base, **changes})


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test, then as it was."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
