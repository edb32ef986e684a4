"""--flow-precision auto: the decision rule on given figures, the real probe on this machine's CPU
(fast PWC-Net, seeded random weights: speed does not depend on their values), and the flow worker that
names its choice for the manifest and the summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowprep.builder.report import BuildReport
from flowprep.builder.stages import FlowWorker
from flowprep.config import FlowConfig
from flowprep.flow.precision import candidates, choose


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    from flowprep.flow.pwcnet import save_random_pwcnet_checkpoint

    return str(save_random_pwcnet_checkpoint(tmp_path_factory.mktemp("w") / "pwcnet-random.ckpt", seed=0))


def test_the_rule_takes_a_reduced_precision_only_when_clearly_faster():
    assert choose({"fp32": 15.0, "bf16": 53.5}, "cpu").precision == "bf16"  # AMX: 3.6x
    assert choose({"fp32": 8.8, "bf16": 1.3}, "cpu").precision == "fp32"  # AVX2 only: 7x slower
    assert choose({"fp32": 10.0, "bf16": 11.0}, "cpu").precision == "fp32"  # within the margin: not worth the error
    assert choose({"fp32": 9000.0, "fp16": 21000.0}, "cuda:0").precision == "fp16"
    assert candidates("cpu") == ("fp32", "bf16") and candidates("cuda:0") == ("fp32", "fp16")
    note = choose({"fp32": 8.8, "bf16": 1.3}, "cpu").note()
    assert note == "fp32 (--flow-precision auto on cpu: probe pairs/s fp32 8.8, bf16 1.3)"


def test_the_flow_worker_resolves_auto_and_names_its_choice(ckpt):
    """The real probe, in the flow worker as a build runs it. Where the CPU has AMX bf16 is several times
    faster and must be chosen; on an AVX2-only CPU (the usual CI machine) bf16 is emulated, several
    times slower, and fp32 must be."""
    worker = FlowWorker(FlowConfig(backend="pwcnet", ckpt=ckpt, device="cpu", batch_pairs=8, precision="auto"))
    info = worker.describe()
    expected = "bf16" if "amx_bf16" in _cpu_flags() else "fp32"
    assert worker.cfg.precision == expected and info["options"]["dtype"] == expected, info["precision_auto"]
    assert info["precision_auto"].startswith(f"{worker.cfg.precision} (--flow-precision auto on cpu: probe pairs/s fp32 ")
    report = BuildReport(out_dir="out", clips=1, frames=29, seconds=1.0, flow_precision=info["precision_auto"],
                         complete=True)
    assert f"flow precision: {info['precision_auto']}" in report.lines()
