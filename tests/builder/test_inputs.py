"""Every input accounted for: one build over a GRID tree holding whole clips beside every kind of
input that used to vanish or build as a shorter "valid" clip (tests/media.make_broken_grid_tree),
then the partial LRW builds of --words / --splits. Both on the module's real local Ray cluster.

Without Ray: --min-frames on the crop stage, and the messages of bad build options.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flowprep.builder import build
from flowprep.builder.stages import crop_clip
from flowprep.cli import config_from_args, main as cli_main
from flowprep.cli import build_parser
from flowprep.config import BuildConfig, FlowConfig
from flowprep.dataset import ShardDataset
from flowprep.errors import EXIT_FATAL, EXIT_PARTIAL, FlowprepError
from flowprep.shards.manifest import Manifest
from flowprep.shards.verify import verify
from flowprep.shards.records import ClipFailure, ClipResult
from flowprep.sources import ClipRecord, scan
from tests import media

DIS = BuildConfig(flow=FlowConfig(backend="dis", preset="fast"), shard_size=4, workers=2)
GRID_COMMANDS = ["bin", "lay", "place", "set"]
# "bin red by k seven now" in GRID's .align units (1/25000 s), silence around and a pause inside
BRBK7N_ALIGN = """0 20750 sil
20750 27250 bin
27250 33000 red
33000 37500 by
37500 38000 sp
38000 44750 k
44750 52000 seven
52000 60000 now
60000 74500 sil
"""


@pytest.fixture(scope="module")
def broken_build(grid_dir, ray_cluster, tmp_path_factory):
    src = tmp_path_factory.mktemp("inputs") / "grid"
    expected = media.make_broken_grid_tree(src)
    (src / "s1/brbk7n.align").write_text(BRBK7N_ALIGN)  # one clip with word timings, one without
    out = tmp_path_factory.mktemp("inputs_out")
    report = build(src, out, DIS, progress=False, executor=ray_cluster)
    return src, out, report, expected


def test_every_bad_input_is_a_failure_record_and_the_rest_is_built(broken_build):
    src, out, report, expected = broken_build
    assert report.exit_code == EXIT_PARTIAL and report.complete
    assert report.clips == 2 and report.failed == len(expected) == 11 and report.total_failed == 11
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    by_entry = {str(Path(f["path"]).relative_to(src)): f for f in failures}
    assert set(by_entry) == set(expected)
    for entry, (stage, reason) in expected.items():
        record = by_entry[entry]
        assert record["stage"] == stage and re.search(reason, record["reason"]), record
        assert record["split"] == "train" and record["clip_id"]
    manifest = Manifest.load(out)
    assert manifest.planned_clips == 13 and manifest.complete
    assert manifest.totals()["clips"] == 2 and manifest.totals()["failed"] == 11
    assert len(manifest.discovery_failures) == 5
    assert all(f["stage"] == "discover" for f in manifest.discovery_failures)
    assert verify(out) == []  # what the manifest says is what is on disk
    summary = "\n".join(report.lines())
    assert "clips written 2, failed 11" in summary and "11 clip(s) failed in all" in summary


def test_grid_clips_without_align_read_back_with_their_sentence(broken_build):
    _, out, _, _ = broken_build
    ds = ShardDataset(out, split="train", streams=("gray",))
    assert ds.classes == GRID_COMMANDS and len(ds) == 2
    got = {ds[i]["clip_id"]: ds[i] for i in range(len(ds))}
    assert {cid: s["text"] for cid, s in got.items()} == {
        "s1/bbaf2n": "bin blue at f two now", "s1/brbk7n": "bin red by k seven now"}
    for sample in got.values():
        assert sample["word"] == "bin" and sample["label"] == 0
        assert tuple(sample["gray"].shape) == (75, 112, 112)  # every frame, none lost
    assert got["s1/bbaf2n"]["word_times"] == ""  # no .align: no timings
    assert json.loads(got["s1/brbk7n"]["word_times"]) == [
        ["bin", 0.83, 1.09], ["red", 1.09, 1.32], ["by", 1.32, 1.5], ["k", 1.52, 1.79], ["seven", 1.79, 2.08],
        ["now", 2.08, 2.4]]
    # the boundary mask covers the spoken words: frames 21 .. 59, whose centres lie in 0.83 .. 2.4 s
    mask = got["s1/brbk7n"]["boundary"].numpy()
    assert mask.sum() == 39 and mask[20] == 0 and mask[21] == 1 and mask[59] == 1 and mask[60] == 0
    assert got["s1/bbaf2n"]["boundary"].numpy().all()  # unknown: every frame


def test_a_rerun_keeps_the_discovery_failures(broken_build, ray_cluster):
    src, out, _, expected = broken_build
    again = build(src, out, DIS, progress=False, executor=ray_cluster)
    assert again.skipped_shards >= 1 and again.clips == 0 and again.exit_code == EXIT_PARTIAL
    assert again.total_failed == len(expected) and Manifest.load(out).complete


def test_words_and_splits_keep_the_full_word_list(lrw_tree, ray_cluster, tmp_path):
    full = scan(lrw_tree)
    assert full.classes == list(media.LRW_WORDS)  # ABOUT BECAUSE WORLD
    out = tmp_path / "world"
    cfg = DIS.replace(words=("WORLD",), splits=("train", "val"))
    report = build(lrw_tree, out, cfg, progress=False, executor=ray_cluster)
    assert report.exit_code == 0 and report.clips == 3  # WORLD: 2 train + 1 val
    manifest = Manifest.load(out)
    assert manifest.classes == list(media.LRW_WORDS) and set(manifest.splits()) == {"train", "val"}
    assert manifest.config["words"] == ["WORLD"] and manifest.config_fingerprint != DIS.fingerprint()
    for split, count in (("train", 2), ("val", 1)):
        ds = ShardDataset(out, split=split, streams=("gray",))
        assert len(ds) == count and ds.classes == list(media.LRW_WORDS)
        assert {ds[i]["label"] for i in range(count)} == {media.LRW_WORDS.index("WORLD")} == {2}
        assert {ds[i]["text"] for i in range(count)} == {""}  # LRW's .txt gives the word, not a text


def test_train_on_a_folder_without_classes_says_what_to_do(ray_cluster, tmp_path, capsys):
    src = tmp_path / "videos"  # clips right under the root: no class folder, label -1
    for name in ("a.mp4", "b.mp4"):
        media.make_face_clip(src / name, frames=6, size=128)
    out = tmp_path / "shards"
    report = build(src, out, DIS.replace(layout="folder"), progress=False, executor=ray_cluster)
    assert report.exit_code == 0 and Manifest.load(out).classes == []
    code = cli_main(["train", "--shards", str(out), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_FATAL and len(err.splitlines()) == 1, err
    assert "has no classes to train on" in err and "one subfolder per class" in err


# ---- without Ray -------------------------------------------------------------------------------
def test_min_frames_turns_a_short_clip_into_a_decode_failure(grid_dir, tmp_path):
    one = media.one_frame_mpg(media.grid_clips()[0], tmp_path / "clips" / "one.mpg")
    record = ClipRecord("clips/one", str(one), "train", 0, "clips", "folder")
    failure = crop_clip(record, DIS)  # the folder layout knows no frame count: --min-frames decides
    assert isinstance(failure, ClipFailure) and failure.stage == "decode"
    assert failure.reason.startswith("1 of at least 2 frames (--min-frames)")
    three = media.write_video(tmp_path / "clips" / "three.mp4", media.face_clip_frames(3, 128)[0])
    record = ClipRecord("clips/three", str(three), "train", 0, "clips", "folder")
    assert crop_clip(record, DIS.replace(min_frames=4)).reason.startswith("3 of at least 4 frames")
    assert isinstance(crop_clip(record, DIS), ClipResult)  # 3 frames, 2 flow pairs: stored


def test_build_options_are_validated_with_one_line_messages(tmp_path, capsys):
    with pytest.raises(FlowprepError, match=r"^--limit 0: give a number of clips, at least 1"):
        BuildConfig(limit=0)
    with pytest.raises(FlowprepError, match=r"^--min-frames 1: a clip needs at least 2 frames"):
        BuildConfig(min_frames=1)
    with pytest.raises(FlowprepError, match=r"^--splits: dev is not a split; choose among train, val, test"):
        BuildConfig(splits=("train", "dev"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "bbaf2n.mpg").write_bytes(b"\0")
    for argv, words in (
        (["--limit", "0"], "--limit 0: give a number of clips, at least 1"),
        (["--src", str(tmp_path / "missing")], "does not exist: check the --src path"),
        (["--words", "NOPE"], "--words: NOPE not among the 4 classes of"),
    ):
        args = ["build", "--src", str(src), "--out", str(tmp_path / "out"), "--flow", "dis"] + argv
        assert cli_main(args) == EXIT_FATAL
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err


def test_words_come_from_the_command_line_or_a_file(tmp_path):
    listing = tmp_path / "words.txt"
    listing.write_text("ABOUT\nWORLD\n\n")
    base = ["build", "--src", "s", "--out", "o"]
    for value in ("ABOUT,WORLD", str(listing)):
        cfg = config_from_args(build_parser().parse_args(base + ["--words", value, "--splits", "train,val"]))
        assert cfg.words == ("ABOUT", "WORLD") and cfg.splits == ("train", "val")
    plain = config_from_args(build_parser().parse_args(base))
    assert plain.words is None and plain.min_frames == 2
    # unset options leave the fingerprint of builds made before them
    assert "words" not in plain.output_dict() and "min_frames" not in plain.output_dict()
    assert BuildConfig(min_frames=3).fingerprint() != plain.fingerprint()
