"""BuildReport's figures: which stage of a flow-actor build sets the pace.

Each expectation is worked out by hand from the story the report is given (how many frames, how
long each side was busy, on how many workers), not with the report's own formula."""

from __future__ import annotations

import pytest

from flowprep.builder.report import BuildReport


def _report(flow_s: float, cpu_s: float, actors: int = 1, cpus: int = 9) -> BuildReport:
    return BuildReport(out_dir="x", clips=100, frames=2900, seconds=12.0, last_clip_s=10.0, cpus=cpus,
                       flow_actors=actors, stage_seconds={"decode_s": cpu_s / 2, "roi_s": cpu_s / 2, "flow_s": flow_s})


def test_a_fast_flow_stage_waits_for_the_cpu_stages():
    # 2900 frames. One flow actor, busy 2 s in all: it could do 1450 frames in each busy second.
    # 9 CPUs, one held by the actor: 8 crop workers, busy 40 s together = 5 s each for 362.5 frames
    # each = 72.5 frames/s each, 580 frames/s together. The clips finished over 10 s, the actor
    # worked 2 of them: busy 20 %.
    report = _report(flow_s=2.0, cpu_s=40.0)
    balance = report.stage_balance
    assert balance["flow_frames_per_s"] == pytest.approx(1450.0)
    assert balance["cpu_frames_per_s"] == pytest.approx(580.0)
    assert balance["cpu_workers"] == 8
    assert balance["flow_busy"] == pytest.approx(0.2)
    assert any(ln.startswith("flow stage (1 actor(s)) busy 20%") and ln.endswith("flow waits for the CPU stages")
               for ln in report.lines())


def test_a_slow_flow_stage_holds_the_cpu_stages_back():
    # Two actors, busy 19 s together = 9.5 s each over the 10 s the clips took: 95 % busy; each did
    # 1450 frames in 9.5 s, ~152.6 frames/s, ~305.3 together. 4 CPUs, 2 held by actors: 2 crop
    # workers busy 8 s together = 4 s each for 1450 frames = 362.5 frames/s each, 725 together.
    report = _report(flow_s=19.0, cpu_s=8.0, actors=2, cpus=4)
    balance = report.stage_balance
    assert balance["flow_frames_per_s"] == pytest.approx(305.263, abs=1e-3)
    assert balance["cpu_frames_per_s"] == pytest.approx(725.0)
    assert balance["flow_busy"] == pytest.approx(0.95)
    assert any(ln.endswith("on 2 CPU(s): the CPU stages wait for flow") for ln in report.lines())


def test_no_verdict_when_flow_runs_inside_the_crop_tasks():
    report = _report(flow_s=5.0, cpu_s=40.0, actors=0)
    assert report.stage_balance is None
    assert not any(ln.startswith("flow stage") for ln in report.lines())
