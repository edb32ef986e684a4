"""`flowprep preview`: an image with a colour-wheel key and one band per chosen clip; clip choice by id
or by worst QC; requests it cannot honour are refused in one line before any work."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from flowprep.cli import main as cli_main
from flowprep.errors import FlowprepError
from flowprep.preview import (CAPTION_H, GAP, IMAGE_SUFFIXES, INDEX_H, KEY_H, KEY_W, caption, colour_wheel,
                              flow_colours, pick_clips, preview)
from tests.dataset.test_shard_dataset import shard_dir  # noqa: F401  (the fixture)

BAND = CAPTION_H + 16 + INDEX_H + 16 + INDEX_H + GAP  # caption, crops, frame index, flow, pair index (16 px crops)


def test_worst_clips_first(shard_dir):  # noqa: F811
    # the synthetic clips' jitter grows with their index: the worst are the last ones
    picked = pick_clips(shard_dir, worst=2)
    assert picked == [("train-00002.h5", 3), ("train-00002.h5", 2)]


def test_sheet_layout_and_cli(shard_dir, tmp_path, capsys):  # noqa: F811
    out = preview(shard_dir, tmp_path / "sheet.png", clip_ids=["W/train/W_00000", "W/train/W_00005"], columns=4)
    image = cv2.imread(str(out))
    assert image.shape == (KEY_H + GAP + 2 * BAND, KEY_W, 3)
    assert cli_main(["preview", str(shard_dir), "--out", str(tmp_path / "w.png"), "--worst", "3"]) == 0
    assert cv2.imread(str(tmp_path / "w.png")).shape[0] == KEY_H + GAP + 3 * BAND


def test_caption_never_cut_off(tmp_path):
    """A caption wider than the key and the tiles widens the sheet, in full."""
    from dataclasses import replace

    from flowprep.preview import text_width, contact_sheet
    from flowprep.shards import Manifest, write_shard
    from tests.shards.test_writer import ATTRS, _result

    result = _result(0, 5, np.random.default_rng(0))
    result = replace(result, record=replace(result.record, clip_id="W/train/" + "x" * 120))
    m = Manifest(config={}, config_fingerprint="abc", src="/src", layout="lrw", classes=["W"])
    m.commit(write_shard(tmp_path, "train-00000.h5", "train", "p", [result], ATTRS).entry, tmp_path)
    m.planned_clips = 1
    m.save(tmp_path)
    sheet = contact_sheet(tmp_path, [("train-00000.h5", 0)], columns=1)
    assert sheet.shape[1] > KEY_W
    assert sheet[KEY_H + GAP:KEY_H + GAP + CAPTION_H, -2:].min() == 255  # a white margin after the text
    assert sheet[KEY_H + GAP:KEY_H + GAP + CAPTION_H, -text_width("x" * 10):].min() < 128  # the text reaches it


def test_flow_colours_share_one_scale():
    still = np.zeros((2, 8, 8), np.float32)
    still[0, 0, 0] = 0.01  # flow_vis.flow_to_color would stretch this to full saturation
    assert flow_colours(still, peak=3.0).min() >= 253  # ~white: no motion on a 3 px scale
    fast = np.zeros((2, 8, 8), np.float32)
    fast[0] = 3.0  # 3 px to the right: the rim's colour, as saturated as twice as far
    assert np.array_equal(flow_colours(fast, 3.0), flow_colours(fast * 2, 3.0))
    assert flow_colours(fast, 3.0).min() < 60
    wheel = colour_wheel(41)
    assert (wheel[0, 0] == 255).all() and (wheel[20, 20] >= 250).all()  # white outside and at the centre
    rim = flow_colours(fast[:, :1, :1], 3.0)[0, 0].astype(int)  # rightmost point of the wheel = motion to the right
    assert np.abs(wheel[20, 40].astype(int) - rim).max() <= 8


def test_caption_names_unlabelled_clips_and_text():
    sample = {"clip_id": "s1/bbaf2n", "word": "", "label": -1, "gray": np.zeros((75, 4, 4)), "qc": {}}
    assert "  unlabelled  75 frames" in caption(sample)
    assert "''" not in caption(sample)
    assert '  "bin blue at f two now"  ' in caption({**sample, "text": "bin blue at f two now"})
    assert "  ABOUT  " in caption({**sample, "word": "ABOUT", "label": 0})


def test_unknown_clip_is_named(shard_dir, tmp_path):  # noqa: F811
    with pytest.raises(FlowprepError, match="not in .*: nope"):
        preview(shard_dir, tmp_path / "x.png", clip_ids=["nope"])


def _fails(capsys, argv: list[str]) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_suffix_is_one_line_listing_what_works(shard_dir, tmp_path, capsys):  # noqa: F811
    err = _fails(capsys, ["preview", str(shard_dir), "--out", str(tmp_path / "p.jpgx")])
    assert "cannot write .jpgx" in err and ".png, .jpg" in err and ".webp" in err
    assert {".png", ".jpg"} <= set(IMAGE_SUFFIXES) and not (tmp_path / "p.jpgx").exists()
    assert "without a suffix" in _fails(capsys, ["preview", str(shard_dir), "--out", str(tmp_path / "p")])


def test_worst_and_columns_must_be_positive(shard_dir, tmp_path, capsys):  # noqa: F811
    err = _fails(capsys, ["preview", str(shard_dir), "--out", str(tmp_path / "p.png"), "--worst", "0"])
    assert "--worst 0: must be 1 or more" in err
    assert "--columns -1: must be 1 or more" in _fails(
        capsys, ["preview", str(shard_dir), "--out", str(tmp_path / "p.png"), "--columns", "-1"])
    assert not (tmp_path / "p.png").exists()


def test_missing_folder_is_created_and_unwritable_is_explained(shard_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "new" / "deeper" / "p.jpg"
    assert cli_main(["preview", str(shard_dir), "--out", str(out), "--worst", "1"]) == 0
    assert cv2.imread(str(out)).shape[0] == KEY_H + GAP + BAND
    assert capsys.readouterr().err == f"wrote {out}\n"
    (tmp_path / "file").write_text("not a folder")
    err = _fails(capsys, ["preview", str(shard_dir), "--out", str(tmp_path / "file" / "p.png")])
    assert f"{tmp_path / 'file'} is a file, not a folder" in err
    (tmp_path / "dir.png").mkdir()
    assert "is a folder" in _fails(capsys, ["preview", str(shard_dir), "--out", str(tmp_path / "dir.png")])
