"""discover/detect_layout: detection priority, errors a user can act on, cheap detection, scan speed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flowprep.errors import FlowprepError
from flowprep.sources import LAYOUTS, detect_layout, discover, scan
from tests import media
from tests.sources.test_lrw import make_tree


def test_layout_registry_order():
    assert list(LAYOUTS) == ["lrw", "lrs", "grid", "folder"]  # most specific first, the catch-all last
    for name, layout in LAYOUTS.items():
        assert layout.name == name and layout.expects


def test_lrw_wins_over_folder_and_folder_reads_it_the_same_way(tmp_path):
    root = make_tree(tmp_path, {"ABOUT": {"train": 2, "val": 1}, "WORLD": {"test": 1}})
    assert LAYOUTS["folder"].matches(root) and detect_layout(root) == "lrw"
    lrw, folder = discover(root), discover(root, layout="folder")
    assert [r.source for r in folder] == ["folder"] * 4
    strip = lambda recs: [(r.clip_id, r.split, r.label, r.word) for r in recs]  # noqa: E731
    assert strip(folder) == strip(lrw)  # split folders are skipped when naming the class
    assert all(r.boundary for r in lrw) and not any(r.boundary for r in folder)


def test_grid_wins_over_folder(tmp_path):
    for stem in ("bbaf2n", "swwp2s"):
        (tmp_path / f"{stem}.mpg").write_bytes(b"\0")  # a stand-in: not empty
    assert LAYOUTS["folder"].matches(tmp_path) and detect_layout(tmp_path) == "grid"


def test_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FlowprepError, match="does not exist: check the --src path"):
        discover(tmp_path / "missing")
    (tmp_path / "file.mp4").write_bytes(b"x")
    with pytest.raises(FlowprepError, match="is not a folder: --src takes the folder that holds the videos"):
        discover(tmp_path / "file.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlowprepError, match="is empty"):
        discover(tmp_path / "empty")
    with pytest.raises(FlowprepError, match=r"unknown layout 'lrs3'; choose one of: auto, lrw, lrs, grid, folder"):
        discover(tmp_path, layout="lrs3")


def test_unrecognised_tree_lists_every_layout(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no videos here")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0001.png").write_bytes(b"\x89PNG")
    with pytest.raises(FlowprepError) as info:
        detect_layout(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    for name, layout in LAYOUTS.items():
        assert f"{name}: {layout.expects}" in message
    assert "WORD/{train,val,test}/WORD_NNNNN.mp4" in message and ".mpg" in message


def test_an_explicit_layout_that_finds_nothing_says_what_it_expected(tmp_path):
    (tmp_path / "bbaf2n.mpg").write_bytes(b"\0")  # a stand-in: not empty
    with pytest.raises(FlowprepError, match=r"no lrw clips found under .*expected WORD/\{train,val,test\}"):
        discover(tmp_path, layout="lrw")


def _count_scandir(monkeypatch) -> list[str]:
    """Record every folder listed (the real os.scandir still does the work)."""
    listed: list[str] = []
    real = os.scandir

    def counting(path="."):
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    return listed


def test_detection_lists_a_handful_of_folders(tmp_path, monkeypatch):
    words = {f"W{chr(65 + i)}{chr(65 + j)}": {"train": 2, "val": 1, "test": 1} for i in range(8) for j in range(8)}
    make_tree(tmp_path / "lrw", words, duration=None)
    for s in range(1, 35):
        (tmp_path / "grid" / f"s{s}").mkdir(parents=True)
        (tmp_path / "grid" / f"s{s}" / "bbaf2n.mpg").write_bytes(b"\0")  # a stand-in: not empty
    listed = _count_scandir(monkeypatch)
    assert detect_layout(tmp_path / "lrw") == "lrw"
    assert len(listed) <= 5, listed  # 64 words x 3 splits = 193 folders in the tree
    listed.clear()
    assert detect_layout(tmp_path / "grid") == "grid"
    assert len(listed) <= 5, listed


def test_scanning_thousands_of_clips_is_fast(tmp_path):
    """3000 LRW clips with .txt: the scan must stay far below a millisecond per clip (about 30 us here)."""
    words = {f"W{chr(65 + i // 26)}{chr(65 + i % 26)}": {"train": 80, "val": 10, "test": 10} for i in range(30)}
    root = make_tree(tmp_path, words, duration=0.5)
    start = time.perf_counter()
    records = discover(root)
    elapsed = time.perf_counter() - start
    assert len(records) == 3000 and all(r.boundary for r in records)
    assert elapsed < 1.0, f"{elapsed:.2f} s for 3000 clips"


def test_real_lrw_tree_is_detected(lrw_tree):
    assert detect_layout(lrw_tree) == "lrw"
    assert detect_layout(Path(lrw_tree).parent) == "lrw"  # the folder holding lipread_mp4/
    assert len(discover(lrw_tree)) == len(media.LRW_WORDS) * sum(media.LRW_PER_SPLIT.values())


def test_words_read_only_their_own_folders(tmp_path, monkeypatch):
    words = {f"W{chr(65 + i)}": {"train": 2, "val": 1} for i in range(20)}
    root = make_tree(tmp_path / "lrw", words)
    listed = _count_scandir(monkeypatch)
    found = scan(root, "lrw", words=["WB", "WT"])
    assert found.classes == sorted(words) and {r.label for r in found.records} == {1, 19}
    split_folders = [p for p in listed if Path(p).name in ("train", "val", "test")]
    assert {Path(p).parent.name for p in split_folders} == {"WB", "WT"}, listed  # not the other 18 words
