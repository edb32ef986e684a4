"""Entries named like videos that no clip can come from are reported by `scan`, with the reason,
in every layout; none is opened (a FIFO would block the scan) and none disappears."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from flowprep.errors import FlowprepError
from flowprep.sources import discover, scan
from tests import media


def bad_entries(folder: Path, prefix: str = "") -> dict[str, str]:
    """A loop, a dangling link, a FIFO and an empty file named like videos: {name: reason start}."""
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(f"{prefix}loop.mp4", folder / f"{prefix}loop.mp4")
    os.symlink("missing/target.mp4", folder / f"{prefix}dangling.mp4")
    os.mkfifo(folder / f"{prefix}pipe.mp4")
    (folder / f"{prefix}empty.mp4").write_bytes(b"")
    return {f"{prefix}loop.mp4": "symbolic link loop", f"{prefix}dangling.mp4": "dangling symbolic link",
            f"{prefix}pipe.mp4": "a FIFO (named pipe)", f"{prefix}empty.mp4": "empty file (0 bytes)"}


def scan_in_thread(root: Path, layout: str):
    """scan() with a deadline: opening the FIFO would block it forever, and the test must say so."""
    result: dict = {}

    def run():
        try:
            result["found"] = scan(root, layout)
        except Exception as exc:  # handed to the test's thread
            result["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "scan blocked: it opened a FIFO"
    if "error" in result:
        raise result["error"]
    return result["found"]


def test_folder_layout_reports_every_unusable_entry(tmp_path):
    (tmp_path / "CLASS").mkdir()
    (tmp_path / "CLASS/good.mp4").write_bytes(b"\0")
    expected = bad_entries(tmp_path / "CLASS")
    found = scan_in_thread(tmp_path, "folder")
    assert [r.clip_id for r in found.records] == ["CLASS/good"]
    reasons = {s.clip_id: s.reason for s in found.skipped}
    assert set(reasons) == {f"CLASS/{n}" for n in expected}
    for name, start in expected.items():
        assert reasons[f"CLASS/{name}"].startswith(start), reasons
    assert {s.word for s in found.skipped} == {"CLASS"} and {s.split for s in found.skipped} == {"train"}
    failure = found.skipped[0].to_failure()
    assert failure["stage"] == "discover" and set(failure) == {"clip_id", "path", "split", "stage", "reason"}
    assert discover(tmp_path, "folder") == found.records  # the old API: the records alone


def test_grid_layout_reports_misnamed_videos(tmp_path):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1/bbaf2n.mpg").write_bytes(b"\0")
    (tmp_path / "s1/take 2.mpg").write_bytes(b"\0")
    (tmp_path / "s1/bwaw2n.mpg").write_bytes(b"\0")  # GRID's letters skip w
    expected = bad_entries(tmp_path / "s2", prefix="lgaa1a")
    found = scan_in_thread(tmp_path, "auto")
    assert found.layout == "grid" and [r.clip_id for r in found.records] == ["s1/bbaf2n"]
    reasons = {s.clip_id: s.reason for s in found.skipped}
    assert reasons["s1/take 2.mpg"].startswith("the name does not spell a GRID sentence")
    assert reasons["s1/bwaw2n.mpg"].startswith("the name does not spell a GRID sentence")
    assert {k for k in reasons if k.startswith("s2/")} == {f"s2/{n}" for n in expected}


def test_lrw_layout_reports_broken_and_foreign_videos(tmp_path):
    split = tmp_path / "ABOUT" / "train"
    split.mkdir(parents=True)
    (split / "ABOUT_00001.mp4").write_bytes(b"\0")
    (split / "ABOUT_00002.avi").write_bytes(b"\0")
    expected = bad_entries(split, prefix="ABOUT_1")
    found = scan_in_thread(tmp_path, "lrw")
    assert [r.clip_id for r in found.records] == ["ABOUT/train/ABOUT_00001"]
    reasons = {s.clip_id: s.reason for s in found.skipped}
    assert reasons.pop("ABOUT/train/ABOUT_00002.avi") == "LRW clips are .mp4 files, not .avi"
    assert set(reasons) == {f"ABOUT/train/{n}" for n in expected}
    assert {s.word for s in found.skipped} == {"ABOUT"}


def test_a_tree_of_broken_entries_only_says_so(tmp_path):
    bad_entries(tmp_path / "CLASS")
    with pytest.raises(FlowprepError, match=r"no folder clips found under .* \(4 entries skipped, e\.g\. "):
        scan_in_thread(tmp_path, "folder")


def test_words_and_splits_filter_records_and_keep_the_full_class_list(lrw_tree):
    full = scan(lrw_tree)
    part = scan(lrw_tree, words=["WORLD", "ABOUT"], splits=["val"])
    assert part.classes == full.classes == list(media.LRW_WORDS)
    assert [(r.word, r.split, r.label) for r in part.records] == [("ABOUT", "val", 0), ("WORLD", "val", 2)]
    with pytest.raises(FlowprepError, match=r"--words: WROLD not among the 3 classes of .*ABOUT, BECAUSE, WORLD"):
        scan(lrw_tree, words=["WROLD"])
    with pytest.raises(FlowprepError, match="no lrw clips of the chosen words/splits found"):
        scan(lrw_tree, splits=["nope"])
