"""`flowprep stats` on a real build: clip lengths per split, clips per class, and the flag on a clip
far shorter than its split's median (one LRW-shaped clip cut to 10 frames with the bundled ffmpeg)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from flowprep.builder import build
from flowprep.builder.executor import RayExecutor
from flowprep.cli import main as cli_main
from flowprep.config import BuildConfig, FlowConfig, RoiConfig
from flowprep.decode import decode_gray, ffmpeg_binary
from flowprep.shards.stats import format_stats, shard_stats

SHORT = "ABOUT/train/ABOUT_00002"
SHORT_FRAMES = 10
# The folder layout: an LRW tree holds 29 frames a clip, so a cut clip there is a decode failure.
CFG = BuildConfig(layout="folder", roi=RoiConfig(size=48, face_width=140.0 * 48 / 112), flow=FlowConfig(backend="dis", preset="fast"),
                  shard_size=4, workers=2)


@pytest.fixture(scope="module")
def built(lrw_tree, tmp_path_factory) -> Path:
    """The session's LRW-shaped tree (3 words x 2 train, 1 val, 1 test clips of 29 frames) with one
    train clip cut to its first 10 frames, built with DIS flow."""
    src = tmp_path_factory.mktemp("short_tree") / "lipread_mp4"
    shutil.copytree(lrw_tree, src)
    clip = src / f"{SHORT}.mp4"
    cut = clip.with_name("cut.mp4")
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-i", str(clip), "-frames:v",
                    str(SHORT_FRAMES), "-c:v", "libx264", "-crf", "10", "-preset", "veryfast", str(cut)], check=True)
    cut.replace(clip)
    assert len(decode_gray(clip).frames) == SHORT_FRAMES
    out = tmp_path_factory.mktemp("short_shards")
    with RayExecutor(num_cpus=2) as ex:
        report = build(src, out, CFG, progress=False, executor=ex)
    assert report.exit_code == 0 and report.clips == 12, report.lines()
    return out


def test_clip_length_distribution_per_split(built):
    stats = shard_stats(built)
    assert set(stats["clip_frames"]) == {"train", "val", "test"}
    train = stats["clip_frames"]["train"]  # five clips of 29 frames and one of 10
    assert (train["min"], train["p50"], train["max"]) == (SHORT_FRAMES, 29.0, 29)
    assert SHORT_FRAMES < train["p5"] < 29 and train["mean"] == pytest.approx((5 * 29 + SHORT_FRAMES) / 6)
    assert stats["clip_frames"]["val"] == {"min": 29, "p5": 29.0, "p50": 29.0, "max": 29, "mean": 29.0}


def test_short_clip_is_flagged(built):
    stats = shard_stats(built)
    short = stats["short_clips"]["train"]
    assert short["median"] == 29.0 and short["threshold"] == 14.5
    assert short["count"] == 1 and short["clips"] == [{"clip_id": SHORT, "frames": SHORT_FRAMES}]
    assert stats["short_clips"]["val"]["count"] == 0 and stats["short_clips"]["test"]["clips"] == []
    text = format_stats(stats)
    assert f"short clips in train: 1 under 14.5 frames (half the median 29): {SHORT} (10)" in text
    assert "short clips in val" not in text


def test_clips_per_class(built):
    stats = shard_stats(built)
    balance = stats["class_balance"]
    # the tree's words, 2 train clips each; the cut clip still counts
    words = sorted(stats["clips_per_label"]["train"])
    assert len(words) == 3 and balance["train"]["classes"] == 3
    assert balance["train"]["fewest"] == [[w, 2] for w in words] == balance["train"]["most"]
    assert (balance["val"]["min"], balance["val"]["max"]) == (1, 1)
    assert f"clips per class in train (3 classes): {', '.join(f'{w} 2' for w in words)}" in format_stats(stats)


def test_unbalanced_classes_show_both_ends():
    from collections import Counter

    from flowprep.shards.stats import class_balance

    counts = Counter({f"W{i:02d}": i for i in range(1, 13)})
    b = class_balance(counts)
    assert b["fewest"] == [["W01", 1], ["W02", 2], ["W03", 3], ["W04", 4], ["W05", 5]]
    assert b["most"][:2] == [["W12", 12], ["W11", 11]] and (b["min"], b["max"], b["classes"]) == (1, 12, 12)


def test_cli_table_and_json(built, capsys):
    assert cli_main(["stats", str(built)]) == 0
    table = capsys.readouterr().out
    assert "frames per clip" in table and f"{SHORT} (10)" in table
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("frames per clip"))
    assert lines[header].split()[3:] == ["min", "p5", "p50", "max", "mean"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 1:header + 4]}
    assert rows["train"][0] == "10" and rows["train"][2:4] == ["29.0", "29"] and rows["val"][0] == "29"
    assert cli_main(["stats", str(built), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["short_clips"]["train"]["clips"][0]["clip_id"] == SHORT
    assert data["class_balance"]["test"]["classes"] == 3


def test_readme_sample_is_this_output(built):
    """The README's `stats` sample is this build's output, line for line."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text().splitlines()
    start = readme.index("    frames per clip      min      p5     p50     max    mean")
    sample = [line[4:] for line in readme[start:start + 8] if line.startswith("    ")]
    assert len(sample) == 6
    table = format_stats(shard_stats(built)).splitlines()
    for line in sample:
        assert line in table
