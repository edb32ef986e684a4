"""What a build prints: the bar has clips/s and frames/s from the first finished clip (long before the
first shard commits), and the summary covers this run's work only, then says where the shards are and
what to run next."""

from __future__ import annotations

import re

from flowprep.builder import build
from flowprep.builder.report import BuildReport
from flowprep.config import BuildConfig, FlowConfig

TWO_CLIPS = BuildConfig(flow=FlowConfig(backend="dis"), limit=2, shard_size=8)


def _bar_states(stderr: str) -> list[str]:
    return [s.strip() for s in re.split(r"[\r\n]", stderr) if s.strip().startswith("build:")]


def test_bar_rates_before_the_first_commit_and_a_summary_of_this_run(grid_dir, tmp_path, ray_cluster, capsys):
    out = tmp_path / "out"
    report = build(grid_dir, out, TWO_CLIPS, progress=True, executor=ray_cluster)
    states = _bar_states(capsys.readouterr().err)
    # one shard of both clips: it commits after the second clip, yet the bar had rates at the first
    first = next(s for s in states if " 1/2 " in s)
    assert re.search(r"\d+\.\d+clip/s, [1-9]\d* frames/s, 0 failed\]$", first), states
    assert report.clips == 2 and report.frames > 0

    lines = report.lines()
    assert not any("once running" in ln for ln in lines)  # two clips give no steady rate worth printing
    assert f"shards in {out} (manifest.json, failures.jsonl); next:" in lines
    assert any(ln.strip().startswith(f"flowprep verify --shards {out}") for ln in lines)

    again = build(grid_dir, out, TWO_CLIPS, progress=False, executor=ray_cluster)
    assert again.lines()[:2] == ["clips written 0, failed 0, 1 shard(s) already done by an earlier run",
                                 "nothing left to build: every planned shard was committed before"]
    assert not any("frames/s" in ln for ln in again.lines())


def test_steady_rate_only_over_a_long_enough_span():
    short = BuildReport(out_dir="x", clips=6, frames=450, seconds=3.0, first_clip_s=2.9, last_clip_s=2.91,
                        written_shards=1, complete=True)
    assert "once running" not in short.lines()[1]
    long = BuildReport(out_dir="x", clips=100, frames=7500, seconds=60.0, first_clip_s=5.0, last_clip_s=55.0,
                       written_shards=1, complete=True)
    assert "once running)" in long.lines()[1]


def test_an_incomplete_build_says_to_rerun_and_offers_no_next_steps():
    report = BuildReport(out_dir="x", clips=1, frames=75, seconds=1.0, written_shards=1, complete=False)
    assert report.lines()[-1] == "the build is incomplete: rerun the same command to finish it"
    assert not any("next:" in ln for ln in report.lines())
