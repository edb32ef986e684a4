"""`flowprep bench flow` on a tiny budget: every configuration measured, and each PWC-Net
configuration's deviation from ptlflow's fp32 forward checked against a deviation this test
computes itself, from the two backends run directly on the same pairs."""

from __future__ import annotations

import io

import numpy as np
import pytest

from flowprep.flow import get_backend
from flowprep.flow.bench import DEVIATION_PAIRS, flow_bench, frames, print_table
from flowprep.flow.pwcnet import save_random_pwcnet_checkpoint


def test_flow_bench_measures_speed_and_deviation(tmp_path):
    figures = flow_bench(device="cpu", batch_sizes=(2,), dtypes=("fp32", "bf16"), threads=(1,), seconds=0.05,
                         rounds=1, backends=("fast", "ptlflow", "dis", "ptlflow:rapidflow"), ckpt="random")
    rows = {(r["backend"], r["dtype"]): r for r in figures["cases"]}
    assert set(rows) == {("pwcnet ptlflow", "fp32"), ("pwcnet fast", "fp32"), ("pwcnet fast", "bf16"), ("dis", "fp32"),
                         ("ptlflow:rapidflow", "fp32")}
    assert all(r["error"] is None and r["pairs_per_s"] > 0 for r in rows.values())
    assert rows["pwcnet fast", "fp32"]["vs_ptlflow_per_pair"] > 0
    # the bench's weights are a seeded random init: the same seed here gives the same network
    ckpt = str(save_random_pwcnet_checkpoint(tmp_path / "random.ckpt", seed=0))
    prev, nxt = frames(DEVIATION_PAIRS)
    reference = get_backend("pwcnet", ckpt=ckpt, device="cpu", impl="ptlflow")(prev, nxt)
    fast = get_backend("pwcnet", ckpt=ckpt, device="cpu", impl="fast", batch_pairs=2)(prev, nxt)
    epe = float(np.sqrt(((fast - reference) ** 2).sum(axis=1)).mean())  # per-pixel end-point error, averaged
    assert rows["pwcnet fast", "fp32"]["epe_vs_ptlflow_px"] == pytest.approx(epe, abs=2e-5)
    assert rows["pwcnet fast", "fp32"]["epe_vs_ptlflow_px"] < 0.01  # the fast path is ptlflow within rounding
    assert rows["pwcnet fast", "bf16"]["epe_vs_ptlflow_px"] > 10 * rows["pwcnet fast", "fp32"]["epe_vs_ptlflow_px"]
    assert rows["dis", "fp32"]["epe_vs_ptlflow_px"] is None  # not a network: nothing to compare
    # a ptlflow model next to PWC-Net: its pairs/s, and batching moves its flow by float rounding only
    model = rows["ptlflow:rapidflow", "fp32"]
    assert model["pairs_per_s"] > 0 and model["vs_ptlflow_per_pair"] > 0 and model["epe_vs_ptlflow_px"] < 0.01
    table = io.StringIO()
    print_table(figures, file=table)
    assert "EPE px" in table.getvalue() and "pwcnet fast" in table.getvalue() and "ptlflow:rapidflow" in table.getvalue()
