"""flowprep.runtime (device and precision, one home for the trainer, evaluation, benchmarks and PWC-Net)
and TrainConfig's own checks: the Python API refuses what the command line refuses."""

from __future__ import annotations

import pytest
import torch

from flowprep.errors import FlowprepError
from flowprep.runtime import amp_dtype, autocast, grad_scaler, resolve_device
from flowprep.train import TrainConfig


def test_device_names_become_torch_devices_or_one_line_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "mps"):
        with pytest.raises(FlowprepError, match="use auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda", 0)
    else:
        with pytest.raises(FlowprepError, match="CUDA is not available on this machine"):
            resolve_device("cuda:0")


def test_amp_is_float32_off_cuda_and_says_so(capsys):
    cpu = torch.device("cpu")
    assert amp_dtype(False, cpu) is None and capsys.readouterr().err == ""
    assert amp_dtype(True, cpu) is None and "--amp applies on CUDA only" in capsys.readouterr().err
    with autocast(cpu, None):
        assert torch.ones(2, 2).mm(torch.ones(2, 2)).dtype == torch.float32
    assert not grad_scaler(cpu, None).is_enabled()


@pytest.mark.parametrize("change,message", [
    (dict(width=0), "width must be positive"), (dict(lr=-1.0), "lr must be positive"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"), (dict(label_smoothing=-0.1), "label_smoothing"),
    (dict(layers=0), "layers must be at least 1"), (dict(max_steps_per_epoch=0), "max_steps_per_epoch"),
    (dict(device="gpu"), "device 'gpu'"), (dict(warmup_epochs=-1), "warmup_epochs must be 0 or more"),
    (dict(frontend="resnet50"), "frontend 'resnet50'"), (dict(fusion="conv", streams=("gray",)), "two streams"),
])
def test_train_config_refuses_what_the_command_line_refuses(change, message):
    with pytest.raises(FlowprepError, match=message):
        TrainConfig(shards="s", out="o", **change)
    TrainConfig(shards="s", out="o", device="cuda:1", layers=3, dropout=0.0)  # fine as settings, on any machine
