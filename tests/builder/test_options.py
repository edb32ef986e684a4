"""Build options reach the stage that uses them: `--flow-precision` from the command line to the
PWC-Net backend the flow actors hold."""

from __future__ import annotations

import numpy as np
import pytest

from flowprep.builder.stages import make_flow_backend
from flowprep.cli import build_parser, config_from_args
from flowprep.config import FlowConfig
from flowprep.errors import FlowprepError
from flowprep.flow.pwcnet import save_random_pwcnet_checkpoint
from tests.flow.test_pwcnet_fast import pairs


def _config(*options: str):
    return config_from_args(build_parser().parse_args(["build", "--src", "in", "--out", "out", *options]))


def test_flow_precision_reaches_the_pwcnet_backend(tmp_path):
    cfg = _config("--flow-precision", "bf16", "--device", "cpu")
    assert cfg.flow.precision == "bf16" and _config().flow.precision == "fp32"
    ckpt = save_random_pwcnet_checkpoint(tmp_path / "pwcnet-random.ckpt", seed=0)
    prev, nxt = (a[:1] for a in pairs())
    flows = {}
    for precision in ("fp32", "bf16"):
        backend = make_flow_backend(FlowConfig(ckpt=str(ckpt), device="cpu", precision=precision))
        assert backend.describe()["options"]["dtype"] == precision  # what the manifest records
        flows[precision] = backend(prev, nxt)
    # bf16 arithmetic really ran: the flow moved, and stayed finite
    assert np.isfinite(flows["bf16"]).all() and not np.array_equal(flows["bf16"], flows["fp32"])


def test_flow_precision_is_for_pwcnet_only():
    with pytest.raises(FlowprepError, match="--flow-precision bf16 applies to --flow pwcnet only"):
        _config("--flow", "dis", "--flow-precision", "bf16")
