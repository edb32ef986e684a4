"""LRS2/LRS3 layouts: detection, transcripts and word timings, the corpus's own splits, misplaced files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowprep.builder.plan import header_frames, plan_build
from flowprep.config import BuildConfig
from flowprep.errors import FlowprepError
from flowprep.sources import detect_layout, scan
from flowprep.sources.lrs import parse_transcript
from tests import media

PRETRAIN_TXT = """Text:  WE ARE GOING TO LOOK
Conf:  4
Ref:   abc

WORD START END ASDSCORE
WE 0.10 0.25 3.1
ARE 0.25 0.40 4.0
GOING 0.40 0.71 2.2
TO 0.71 0.80 5.0
LOOK 0.80 1.20 6.1
"""


def _clip(folder: Path, name: str, text: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.mp4").write_bytes(b"\0\0\0\x18ftypisom")  # scanning never opens a video
    if text is not None:
        (folder / f"{name}.txt").write_text(text)


def test_transcript_with_and_without_word_timings():
    assert parse_transcript("Text:  HELLO THERE\nConf:  3\n") == ("HELLO THERE", None)
    text, words = parse_transcript(PRETRAIN_TXT)
    assert text == "WE ARE GOING TO LOOK"
    assert words[0] == ("WE", 0.10, 0.25) and words[-1] == ("LOOK", 0.80, 1.20) and len(words) == 5
    assert parse_transcript("no header here") == ("", None)


def test_lrs3_tree_is_detected_and_keeps_its_splits(tmp_path):
    _clip(tmp_path / "trainval" / "0af00UcTOSc", "50001", "Text:  THE WORDS\nConf:  5\n")
    _clip(tmp_path / "pretrain" / "0af00UcTOSc", "00001", PRETRAIN_TXT)
    _clip(tmp_path / "test" / "spk2", "00003", "Text:  MORE WORDS\n")
    (tmp_path / "test" / "stray.mp4").write_bytes(b"x")  # not SPLIT/SPEAKER/NAME.mp4
    assert detect_layout(tmp_path) == "lrs"
    found = scan(tmp_path)
    by_id = {r.clip_id: r for r in found.records}
    assert set(by_id) == {"pretrain/0af00UcTOSc/00001", "test/spk2/00003", "trainval/0af00UcTOSc/50001"}
    pre = by_id["pretrain/0af00UcTOSc/00001"]
    assert (pre.split, pre.text, pre.label, pre.word) == ("pretrain", "WE ARE GOING TO LOOK", -1, "")
    assert pre.word_times[2] == ("GOING", 0.40, 0.71) and pre.boundary == (0.10, 1.20)
    tv = by_id["trainval/0af00UcTOSc/50001"]
    assert (tv.split, tv.text, tv.word_times, tv.boundary) == ("trainval", "THE WORDS", None, None)
    assert [s.clip_id for s in found.skipped] == ["test/stray.mp4"]
    assert "trainval/ID/NAME.mp4" in found.skipped[0].reason
    assert found.classes == []


def test_lrs2_split_lists_decide_the_split(tmp_path):
    corpus = tmp_path / "mvlrs_v1"
    for speaker, name in (("600", "00001"), ("601", "00002"), ("602", "00003")):
        _clip(corpus / "main" / speaker, name, "Text:  A SENTENCE\n")
    _clip(corpus / "pretrain" / "603", "00004", PRETRAIN_TXT)
    (tmp_path / "train.txt").write_text("600/00001\n")
    (tmp_path / "test.txt").write_text("601/00002 NF\n")  # LRS2's test list has a second column
    assert detect_layout(tmp_path) == "lrs"
    splits = {r.clip_id: r.split for r in scan(tmp_path, "lrs").records}
    assert splits == {"mvlrs_v1/main/600/00001": "train", "mvlrs_v1/main/601/00002": "test",
                      "mvlrs_v1/main/602/00003": "main", "mvlrs_v1/pretrain/603/00004": "pretrain"}
    # --splits takes the corpus's own split names
    assert [r.split for r in scan(tmp_path, "lrs", splits=["pretrain"]).records] == ["pretrain"]
    assert BuildConfig(splits=("pretrain", "trainval", "main")).splits == ("pretrain", "trainval", "main")
    with pytest.raises(FlowprepError, match="not a split"):
        BuildConfig(splits=("pretrian",))


def test_lrw_and_grid_trees_are_not_taken_for_lrs(lrw_tree, grid_dir):
    assert detect_layout(lrw_tree) == "lrw"
    assert detect_layout(grid_dir) == "grid"


def test_shards_close_by_bytes_from_the_mp4_index(tmp_path):
    """Frame counts come from each MP4's index before decoding; a shard closes before passing --shard-bytes."""
    lengths = {"00001": 10, "00002": 30, "00003": 12, "00004": 8}
    (tmp_path / "trainval" / "spk").mkdir(parents=True)
    for name, n in lengths.items():
        media.write_mp4(tmp_path / "trainval" / "spk" / f"{name}.mp4", np.zeros((n, 32, 32), np.uint8),
                        faststart=name == "00001")
        (tmp_path / "trainval" / "spk" / f"{name}.txt").write_text("Text:  X\n")
    records = scan(tmp_path).records
    assert [header_frames(r) for r in records] == list(lengths.values())
    per_frame = 112 * 112 * 3 + 68 * 2 * 2 + 24  # gray + int8 flow + landmarks + affine
    cfg = BuildConfig(shard_size=100, shard_bytes=32 * per_frame)
    plan = plan_build(records, cfg)
    # 10 | 30 (alone: 10+30 > 32) | 12+8
    assert [[r.clip_id[-5:] for r in p.records] for p in plan] == [["00001"], ["00002"], ["00003", "00004"]]
    assert [p.name for p in plan] == ["trainval-00000.h5", "trainval-00001.h5", "trainval-00002.h5"]
    assert len(plan_build(records, BuildConfig(shard_size=3))) == 2  # by count alone, as before
