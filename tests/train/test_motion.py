"""Which stream sees motion: a task decided only by the direction a texture drifts (see motion.py)."""

from __future__ import annotations

import pytest

from flowprep.train import train
from tests.train.conftest import tiny
from tests.train.motion import write_motion_shards

SPLITS = {"train": 16, "val": 12}  # clips per class: 32 to train on, 24 to judge


@pytest.fixture(scope="module")
def motion_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    return {"frozen": write_motion_shards(root / "frozen", SPLITS),
            "moving": write_motion_shards(root / "moving", SPLITS, frozen_gray=False)}


def _val_top1(shards, out, streams, epochs: int = 6) -> float:
    summary = train(tiny(shards, out, streams=streams, crop=28, epochs=epochs, batch_size=8, lr=3e-3))
    return summary["history"][-1]["val_top1"]


def test_flow_learns_the_direction_and_frozen_gray_cannot(motion_shards, tmp_path):
    flow = _val_top1(motion_shards["frozen"], tmp_path / "flow", ("flow",))
    gray = _val_top1(motion_shards["frozen"], tmp_path / "gray", ("gray",))
    both = _val_top1(motion_shards["frozen"], tmp_path / "both", ("gray", "flow"))
    assert flow >= 0.9
    assert gray <= 0.7  # chance is 0.5: one still frame says nothing about where it goes
    assert both >= flow - 1 / 24  # fusing a useless stream costs at most one clip of 24


def test_gray_learns_it_too_when_its_frames_move(motion_shards, tmp_path):
    """The control: the gray stream is not broken, it was only starved of motion (motion in
    pixels is a harder cue than flow: it gets a few more epochs)."""
    assert _val_top1(motion_shards["moving"], tmp_path / "gray", ("gray",), epochs=10) >= 0.9
