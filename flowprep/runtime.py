"""Where torch runs and in which precision: one home for the device and mixed-precision helpers.

The trainer, the evaluation, the benchmarks and the PWC-Net flow backend all turn a device name from
the command line (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a ``torch.device`` and pick a reduced
precision; they do it here, so the names mean the same everywhere and a missing GPU is reported the
same way. torch is imported inside the functions: modules that only name devices stay light.
"""

from __future__ import annotations

import contextlib
import sys

from .errors import FlowprepError


def resolve_device(name: str):
    """``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` as a torch.device;
    a CUDA device on a machine without one, or another name, is a one-line error saying what to use."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise FlowprepError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise FlowprepError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FlowprepError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    return device


def amp_dtype(amp: bool, device):
    """The reduced precision of ``--amp`` on ``device``: bfloat16 where the GPU has it, else float16
    (to be used with loss scaling in training); None for float32 (no --amp, or not on CUDA)."""
    import torch

    if not amp:
        return None
    if device.type != "cuda":
        print(f"flowprep: --amp applies on CUDA only; running in float32 on {device}", file=sys.stderr)
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device, dtype):
    """``torch.autocast`` in ``dtype`` on the device's type, or nothing for float32 (``dtype`` None)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device, dtype):
    """Loss scaling for float16 (bfloat16 and float32 need none): a disabled scaler otherwise."""
    import torch

    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
