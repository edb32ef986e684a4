"""The GRID layout: the real flat folder of clips, and generated speaker trees with .align files."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowprep.sources import detect_layout, discover
from flowprep.sources.grid import is_grid_name, parse_align

# bbaf2n: "bin blue at f two now", in 1/25000 s units; silence before and after, a short pause inside
ALIGN = """0 23750 sil
23750 29500 bin
29500 34000 blue
34000 35500 at
35500 36000 sp
36000 41000 f
41000 47250 two
47250 53000 now
53000 74500 sil
"""


def test_parse_align():
    sentence, boundary = parse_align(ALIGN)
    assert sentence == "bin blue at f two now"
    assert boundary == pytest.approx((23750 / 25000, 53000 / 25000))
    assert parse_align("0 74500 sil\n") == ("", None)
    assert parse_align("garbage\n1 2\nx y z\n") == ("", None)


def test_grid_names():
    assert all(is_grid_name(n) for n in ("bbaf2n.mpg", "lrwp9a.mpg", "swwz2s.mp4", "pgbkzp.mpg"))
    assert not any(is_grid_name(n) for n in ("bbaf2n.align", "ABOUT_00001.mp4", "xbaf2n.mpg", ".bbaf2n.mpg"))


def test_real_grid_folder(grid_dir):
    records = discover(grid_dir)
    stems = sorted(p.stem for p in Path(grid_dir).glob("*.mpg"))
    assert detect_layout(grid_dir) == "grid"
    assert [r.clip_id for r in records] == stems
    # no .align here: the sentence comes from the name, the label is its command (bin lay place set)
    sentences = {"bbaf2n": "bin blue at f two now", "brbk7n": "bin red by k seven now",
                 "lbax4n": "lay blue at x four now", "lbbc2a": "lay blue by c two again",
                 "lrwp9a": "lay red with p nine again", "swwp2s": "set white with p two soon"}
    assert {r.clip_id: r.text for r in records} == {s: sentences[s] for s in stems}
    for r in records:
        command = r.text.split()[0]
        assert (r.source, r.split, r.word, r.boundary, r.word_times) == ("grid", "train", command, None, None)
        assert r.label == ["bin", "lay", "place", "set"].index(command)
        assert Path(r.path).is_file() and Path(r.path).is_absolute()


def test_speaker_tree_with_align_files_in_every_usual_place(tmp_path):
    root = tmp_path / "grid"
    for speaker in ("s1", "s2", "s10"):
        (root / speaker).mkdir(parents=True)
        for stem in ("bbaf2n", "lrwp9a"):
            (root / speaker / f"{stem}.mpg").write_bytes(b"\0")  # a stand-in: not empty
    (root / "s1/bbaf2n.align").write_text(ALIGN)  # beside the video
    (root / "s2/align").mkdir()
    (root / "s2/align/bbaf2n.align").write_text(ALIGN.replace("bin", "set"))  # in align/ beside it
    (root / "align/s10").mkdir(parents=True)
    (root / "align/s10/bbaf2n.align").write_text(ALIGN.replace("bin", "lay"))  # under the root, by speaker
    (root / "align/s10/lrwp9a.align").write_text("0 74500 sil\n")  # silence only
    assert detect_layout(root) == "grid"
    records = discover(root)
    assert [r.clip_id for r in records] == [
        "s1/bbaf2n", "s1/lrwp9a", "s10/bbaf2n", "s10/lrwp9a", "s2/bbaf2n", "s2/lrwp9a",
    ]
    texts = {r.clip_id: r.text for r in records}
    # the .align's sentence where one is found (even where it disagrees with the name), else the name's
    assert texts == {
        "s1/bbaf2n": "bin blue at f two now", "s2/bbaf2n": "set blue at f two now",
        "s10/bbaf2n": "lay blue at f two now", "s1/lrwp9a": "lay red with p nine again",
        "s2/lrwp9a": "lay red with p nine again", "s10/lrwp9a": "lay red with p nine again",
    }
    for r in records:
        assert r.split == "train" and r.word == r.text.split()[0]
        assert r.label == ["bin", "lay", "place", "set"].index(r.word)
        aligned = r.clip_id.endswith("bbaf2n")  # lrwp9a's .align (s10) holds silence only: no timings
        assert r.boundary == (pytest.approx((0.95, 2.12)) if aligned else None)
        if aligned:
            assert [w for w, _, _ in r.word_times] == r.text.split()
            assert r.word_times[0][1:] == pytest.approx((0.95, 1.18)) and r.word_times[-1][2] == pytest.approx(2.12)
        else:
            assert r.word_times is None


def test_split_folders_and_nested_speaker_folders(tmp_path):
    root = tmp_path / "grid"
    for split, speaker in (("train", "s1"), ("test", "s2")):
        (root / speaker / "video").mkdir(parents=True)
        (root / speaker / "video" / "bbaf2n.mpg").write_bytes(b"\0")  # a stand-in: not empty
        (root / speaker / "video" / split).mkdir()
        (root / speaker / "video" / split / "brbk7n.mpg").write_bytes(b"\0")  # a stand-in: not empty
    assert detect_layout(root) == "grid"
    got = [(r.split, r.clip_id) for r in discover(root)]
    assert got == [
        ("test", "s2/video/test/brbk7n"),
        ("train", "s1/video/bbaf2n"),
        ("train", "s1/video/train/brbk7n"),
        ("train", "s2/video/bbaf2n"),
    ]


def test_a_flat_folder_is_grid_only_when_every_video_has_a_grid_name(tmp_path):
    (tmp_path / "bbaf2n.mpg").write_bytes(b"\0")  # a stand-in: not empty
    (tmp_path / "bbaf2n.align").write_text(ALIGN)
    assert detect_layout(tmp_path) == "grid"
    (tmp_path / "holiday.mp4").write_bytes(b"\0")  # a stand-in: not empty
    assert detect_layout(tmp_path) == "folder"
    # asked for explicitly, GRID takes the GRID-named clips and leaves the rest
    assert [r.clip_id for r in discover(tmp_path, "grid")] == ["bbaf2n"]
