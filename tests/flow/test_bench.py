"""`flowprep bench flow` on a tiny budget: every configuration measured against the same-run
reference, and each PWC-Net configuration's flow compared with ptlflow's fp32 forward."""

from __future__ import annotations

import io

from flowprep.flow.bench import flow_bench, print_table


def test_flow_bench_measures_speed_and_deviation():
    figures = flow_bench(device="cpu", batch_sizes=(2,), dtypes=("fp32", "bf16"), threads=(1,), seconds=0.05,
                         rounds=1, backends=("fast", "ptlflow", "dis"), ckpt="random")
    rows = {(r["backend"], r["dtype"]): r for r in figures["cases"]}
    assert set(rows) == {("pwcnet ptlflow", "fp32"), ("pwcnet fast", "fp32"), ("pwcnet fast", "bf16"), ("dis", "fp32")}
    assert all(r["error"] is None and r["pairs_per_s"] > 0 for r in rows.values())
    assert rows["pwcnet ptlflow", "fp32"]["vs_ptlflow_per_pair"] == 1.0
    assert rows["pwcnet fast", "fp32"]["vs_ptlflow_per_pair"] > 0
    # the reference against itself, the fast path within float rounding, bf16 visibly off
    assert rows["pwcnet ptlflow", "fp32"]["epe_vs_ptlflow_px"] < 1e-3  # one pair per call vs eight: rounding
    assert rows["pwcnet fast", "fp32"]["epe_vs_ptlflow_px"] < 0.01
    assert rows["pwcnet fast", "bf16"]["epe_vs_ptlflow_px"] > 10 * rows["pwcnet fast", "fp32"]["epe_vs_ptlflow_px"]
    assert rows["dis", "fp32"]["epe_vs_ptlflow_px"] is None  # not PWC-Net: nothing to compare
    table = io.StringIO()
    print_table(figures, file=table)
    assert "EPE px" in table.getvalue() and "pwcnet fast" in table.getvalue()
