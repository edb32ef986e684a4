"""`flowprep preview`: a PNG with one band per chosen clip; clip choice by id or by worst QC."""

from __future__ import annotations

import cv2
import pytest

from flowprep.cli import main as cli_main
from flowprep.errors import FlowprepError
from flowprep.preview import CAPTION_H, pick_clips, preview
from tests.dataset.test_shard_dataset import shard_dir  # noqa: F401  (the fixture)


def test_worst_clips_first(shard_dir):  # noqa: F811
    # the synthetic clips' jitter grows with their index: the worst are the last ones
    picked = pick_clips(shard_dir, worst=2)
    assert picked == [("train-00002.h5", 3), ("train-00002.h5", 2)]


def test_sheet_layout_and_cli(shard_dir, tmp_path, capsys):  # noqa: F811
    out = preview(shard_dir, tmp_path / "sheet.png", clip_ids=["W/train/W_00000", "W/train/W_00005"], columns=4)
    image = cv2.imread(str(out))
    band = CAPTION_H + 2 * 16 + 6  # caption, crops row, flow row, gap (16 px synthetic crops)
    assert image.shape == (CAPTION_H + 2 * band, 4 * 16, 3)
    assert cli_main(["preview", str(shard_dir), "--out", str(tmp_path / "w.png"), "--worst", "3"]) == 0
    assert cv2.imread(str(tmp_path / "w.png")).shape[0] == CAPTION_H + 3 * band


def test_unknown_clip_is_named(shard_dir, tmp_path):  # noqa: F811
    with pytest.raises(FlowprepError, match="not in .*: nope"):
        preview(shard_dir, tmp_path / "x.png", clip_ids=["nope"])
