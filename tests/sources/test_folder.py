"""The folder layout: any tree of videos; classes from folder names, splits from split folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowprep.errors import FlowprepError
from flowprep.sources import VIDEO_SUFFIXES, detect_layout, discover


def touch(root: Path, *relpaths: str) -> None:
    for rel in relpaths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\0")  # a stand-in: not empty


def test_classes_splits_and_flat_files(tmp_path):
    touch(
        tmp_path,
        "cats/a.mp4", "cats/b.MOV", "dogs/train/c.avi", "dogs/val/d.mkv", "test/birds/e.webm",
        "loose.mpg", "train/f.mpeg",
        "cats/notes.txt", "cats/.hidden.mp4", ".cache/g.mp4", "dogs/cover.jpg",
    )
    assert detect_layout(tmp_path) == "folder"
    got = [(r.split, r.clip_id, r.label, r.word) for r in discover(tmp_path)]
    assert got == [
        ("test", "test/birds/e", 0, "birds"),
        ("train", "cats/a", 1, "cats"),
        ("train", "cats/b", 1, "cats"),
        ("train", "dogs/train/c", 2, "dogs"),
        ("train", "loose", -1, ""),
        ("train", "train/f", -1, ""),
        ("val", "dogs/val/d", 2, "dogs"),
    ]
    for r in discover(tmp_path):
        assert r.source == "folder" and r.boundary is None
        assert Path(r.path).is_file() and os.path.isabs(r.path)


def test_every_video_suffix_is_found(tmp_path):
    touch(tmp_path, *(f"v{i}{suffix}" for i, suffix in enumerate(sorted(VIDEO_SUFFIXES))))
    assert len(discover(tmp_path, "folder")) == len(VIDEO_SUFFIXES) == 7


def test_two_videos_with_one_clip_id_are_refused(tmp_path):
    touch(tmp_path, "x/a.mp4", "x/a.avi", "x/b.mp4")
    with pytest.raises(FlowprepError, match=r"'x/a'.*a\.avi.*a\.mp4"):
        discover(tmp_path)


def test_symlinked_folders_are_followed_but_cycles_end(tmp_path):
    touch(tmp_path, "real/one.mp4")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "elsewhere").symlink_to(tmp_path / "real", target_is_directory=True)
    ids = [r.clip_id for r in discover(tmp_path, "folder")]
    assert ids == ["elsewhere/one", "real/one"]  # a linked folder is a folder; the loop back adds nothing
