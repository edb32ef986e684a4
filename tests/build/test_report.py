"""BuildReport's figures: which stage of a flow-actor build sets the pace."""

from __future__ import annotations

import pytest

from flowprep.build.report import BuildReport


def _report(flow_s: float, cpu_s: float, actors: int = 1, cpus: int = 9) -> BuildReport:
    return BuildReport(out_dir="x", clips=100, frames=2900, seconds=12.0, last_clip_s=10.0, cpus=cpus,
                       flow_actors=actors, stage_seconds={"decode_s": cpu_s / 2, "roi_s": cpu_s / 2, "flow_s": flow_s})


def test_a_fast_flow_stage_waits_for_the_cpu_stages():
    report = _report(flow_s=2.0, cpu_s=40.0)  # flow busy 2 s of 10; 8 crop CPUs busy 40 s in all
    balance = report.stage_balance
    assert balance["flow_frames_per_s"] == pytest.approx(1450.0)
    assert balance["cpu_frames_per_s"] == pytest.approx(2900 * 8 / 40.0)
    assert balance["flow_busy"] == pytest.approx(0.2)
    assert any(ln.startswith("flow stage (1 actor(s)) busy 20%") and ln.endswith("flow waits for the CPU stages")
               for ln in report.lines())


def test_a_slow_flow_stage_holds_the_cpu_stages_back():
    report = _report(flow_s=19.0, cpu_s=8.0, actors=2, cpus=4)  # two actors busy 9.5 s of 10 each
    balance = report.stage_balance
    assert balance["flow_frames_per_s"] == pytest.approx(2900 * 2 / 19.0)
    assert balance["cpu_frames_per_s"] == pytest.approx(2900 * 2 / 8.0)
    assert balance["flow_busy"] == pytest.approx(0.95)
    assert any(ln.endswith("on 2 CPU(s): the CPU stages wait for flow") for ln in report.lines())


def test_no_verdict_when_flow_runs_inside_the_crop_tasks():
    report = _report(flow_s=5.0, cpu_s=40.0, actors=0)
    assert report.stage_balance is None
    assert not any(ln.startswith("flow stage") for ln in report.lines())
