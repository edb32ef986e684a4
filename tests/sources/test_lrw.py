"""The LRW layout on generated trees (empty videos: scanning never opens them) and on real videos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowprep.sources import ClipRecord, detect_layout, discover
from flowprep.sources.lrw import CLIP_SECONDS, parse_boundary
from tests import media


def make_tree(root: Path, clips: dict[str, dict[str, int]], duration: float | None = 0.5) -> Path:
    """WORD/split/WORD_NNNNN.mp4 (empty) + .txt with ``duration`` (None: no .txt)."""
    for word, splits in clips.items():
        for split, n in splits.items():
            folder = root / word / split
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(1, n + 1):
                (folder / f"{word}_{i:05d}.mp4").write_bytes(b"\0")  # a stand-in: not empty
                if duration is not None:
                    (folder / f"{word}_{i:05d}.txt").write_text(media.lrw_txt(word, duration))
    return root


def test_parse_boundary_centres_the_word():
    assert parse_boundary(media.lrw_txt("ABOUT", 0.53)) == pytest.approx((0.315, 0.845))
    assert parse_boundary("Text:  A\nConf:  1\n\nDuration: 0.2 seconds\n") == pytest.approx((0.48, 0.68))
    start, end = parse_boundary("Duration: 1.5 seconds")  # longer than the clip: the whole clip
    assert (start, end) == pytest.approx((0.0, CLIP_SECONDS))
    for garbled in ("", "Text:  ABOUT\nConf:  5\n", "Duration: seconds", "Duration: 0 seconds", "\x00\xff" * 40):
        assert parse_boundary(garbled) is None, garbled


def test_labels_splits_boundaries_and_order(tmp_path):
    root = make_tree(tmp_path / "lipread_mp4", {
        "WORLD": {"train": 3, "val": 1, "test": 1},
        "ABOUT": {"train": 2, "test": 1},
        "BECAUSE": {"val": 2},
    }, duration=0.4)
    assert detect_layout(root) == "lrw"
    records = discover(root)
    assert len(records) == 10
    assert [(r.split, r.clip_id) for r in records] == sorted((r.split, r.clip_id) for r in records)
    assert len({r.clip_id for r in records}) == len(records)
    words = ["ABOUT", "BECAUSE", "WORLD"]
    for r in records:
        word, split, stem = r.clip_id.split("/")
        assert (r.word, r.split, r.source) == (word, split, "lrw")
        assert r.label == words.index(word)
        assert stem.startswith(word + "_")
        assert r.path == str(root / word / split / (stem + ".mp4")) and os.path.isabs(r.path)
        assert r.boundary == pytest.approx((0.38, 0.78))
        assert sum(r.boundary) == pytest.approx(CLIP_SECONDS)  # centred
    counts = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    assert counts == {"train": 5, "val": 3, "test": 2}
    assert discover(root) == records  # stable


def test_missing_or_garbled_txt_gives_no_boundary(tmp_path):
    root = make_tree(tmp_path, {"ABOUT": {"train": 3}}, duration=None)
    (root / "ABOUT/train/ABOUT_00002.txt").write_bytes(b"\xff\xfe garbage")
    (root / "ABOUT/train/ABOUT_00003.txt").write_text(media.lrw_txt("ABOUT", 0.3))
    by_id = {r.clip_id: r.boundary for r in discover(root, "lrw")}
    assert by_id["ABOUT/train/ABOUT_00001"] is None
    assert by_id["ABOUT/train/ABOUT_00002"] is None
    assert by_id["ABOUT/train/ABOUT_00003"] == pytest.approx((0.43, 0.73))


def test_parent_of_lipread_mp4_and_stray_entries(tmp_path):
    root = make_tree(tmp_path / "lrw" / "lipread_mp4", {"ABOUT": {"train": 2}, "ZERO": {"test": 1}})
    # what a copy of the dataset picks up on the way: none of it is a clip
    (root / "ABOUT/train/.ABOUT_00009.mp4").write_bytes(b"\0")  # a stand-in: not empty
    (root / "ABOUT/train/notes.txt").write_text("x")
    (root / "ABOUT/dev").mkdir()
    (root / "ABOUT/dev/ABOUT_00001.mp4").write_bytes(b"\0")  # a stand-in: not empty
    (root / "README.md").write_text("x")
    (root / "lowercase/train").mkdir(parents=True)
    inner = discover(root)
    outer = discover(tmp_path / "lrw")
    assert detect_layout(tmp_path / "lrw") == "lrw"
    assert outer == inner
    assert [r.clip_id for r in inner] == ["ZERO/test/ZERO_00001", "ABOUT/train/ABOUT_00001", "ABOUT/train/ABOUT_00002"]
    assert [r.label for r in inner] == [1, 0, 0]


def test_labels_count_every_word_folder(tmp_path):
    """A word folder with no clips still takes its place in the sorted word list."""
    root = make_tree(tmp_path, {"ABOUT": {"train": 1}, "BECAUSE": {}, "WORLD": {"train": 1}})
    (root / "BECAUSE").mkdir(exist_ok=True)
    assert {r.word: r.label for r in discover(root)} == {"ABOUT": 0, "WORLD": 2}


def test_record_round_trips_through_a_dict():
    import json

    rec = ClipRecord("ABOUT/train/ABOUT_00001", "/d/a.mp4", "train", 3, "ABOUT", "lrw", (0.315, 0.845))
    d = json.loads(json.dumps(rec.to_dict()))
    assert d["boundary"] == [0.315, 0.845]
    assert ClipRecord.from_dict(d) == rec
    bare = ClipRecord("s1/bbaf2n", "/d/b.mpg", "train", -1, "", "grid", None)
    assert ClipRecord.from_dict(bare.to_dict()) == bare
    spoken = ClipRecord("s1/bbaf2n", "/d/b.mpg", "train", 0, "bin", "grid", (0.95, 1.4),
                        text="bin blue", word_times=(("bin", 0.95, 1.18), ("blue", 1.18, 1.4)))
    d = json.loads(json.dumps(spoken.to_dict()))
    assert d["word_times"] == [["bin", 0.95, 1.18], ["blue", 1.18, 1.4]]
    assert ClipRecord.from_dict(d) == spoken
    old = {k: v for k, v in bare.to_dict().items() if k not in ("text", "word_times")}  # a record from before
    assert ClipRecord.from_dict(old) == bare


def test_real_lrw_tree(lrw_tree):
    """The session's tree of real videos: 3 words x 4 clips, durations as media.lrw_duration wrote them."""
    records = discover(lrw_tree)
    assert {r.source for r in records} == {"lrw"} and len(records) == 12
    words = sorted(media.LRW_WORDS)
    k = 0  # the k-th clip written walks words, then splits, then indices in LRW_PER_SPLIT order
    by_id = {r.clip_id: r for r in records}
    for word in media.LRW_WORDS:
        for split, count in media.LRW_PER_SPLIT.items():
            for i in range(1, count + 1):
                r = by_id[f"{word}/{split}/{word}_{i:05d}"]
                d = media.lrw_duration(k)
                assert r.label == words.index(word)
                assert r.boundary == pytest.approx(((CLIP_SECONDS - d) / 2, (CLIP_SECONDS + d) / 2), abs=1e-6)
                assert Path(r.path).stat().st_size > 1000
                k += 1
