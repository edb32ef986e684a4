"""PWC-Net through ptlflow: the seed paper's flow, batched over many pairs from many clips.

Weights: ``ckpt`` is a local file, or "things"/"sintel", ptlflow's published weights, looked up in
torch hub's checkpoint cache (where ptlflow itself keeps them). Nothing is downloaded: a missing
named checkpoint is an immediate FlowprepError that says which file to fetch and where to put it.

Checkpoints are read with ``torch.load(weights_only=True)`` (tensors and plain containers only,
never arbitrary objects) and their ``state_dict`` (or the file itself, when it is a bare state
dict) is loaded strictly into ptlflow's own PWC-Net. Hyper-parameters in the file are not needed
for inference and are not read.

Input: grayscale replicated to three channels, 0..1 floats, [B,2,3,H,W] as ptlflow's models take
it; ptlflow's forward resizes to a multiple of 64 and scales the flow back, so the output is
exactly ptlflow's flow for those weights. ptlflow is imported only when a backend is built
(importing it takes seconds).

Two implementations of the forward share those weights: ``impl="fast"`` (default, see
``pwcnet_fast``: batched cost volume, one pyramid pass for both frames, channels_last, optional
autocast and torch.compile, pinned-memory streaming on CUDA) and ``impl="ptlflow"``, ptlflow's own
forward, the reference the fast path is tested against (flow equal within float rounding).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FlowConfig
from ..errors import FlowprepError
from ..files import file_sha256
from ..runtime import resolve_device
from .base import FlowBackend, register_backend

# ptlflow's published weights for its "pwcnet" model, which is PWC-DC-Net (the paper's network,
# with dense connections; the plain variant is "pwcnet_nodc" and its pwcnet-*.ckpt files do not
# fit). The hex part of each file name is the start of the file's sha256.
NAMED_CHECKPOINTS = {
    "things": "https://github.com/hmorimitsu/ptlflow/releases/download/weights1/pwcdcnet-things-cc223701.ckpt",
    "sintel": "https://github.com/hmorimitsu/ptlflow/releases/download/weights1/pwcdcnet-sintel-c7d08a46.ckpt",
}
def checkpoint_cache_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_checkpoint(ckpt: str | os.PathLike | None, named: Mapping[str, str] | None = None,
                       model: str = "PWC-Net") -> Path:
    """The local file for ``ckpt`` (a path, or a name of ``named``: ptlflow's published weights,
    looked up in torch hub's checkpoint cache), or a FlowprepError saying how to get it. Never
    downloads: a build runs where no network may be."""
    named = NAMED_CHECKPOINTS if named is None else named
    names = ", ".join(named) or "none published"
    if not ckpt:
        raise FlowprepError(f"{model} needs weights: pass --flow-ckpt NAME|/path/to/file.ckpt (names: {names})")
    path = Path(ckpt).expanduser()
    if path.is_file():
        return path.resolve()
    if str(ckpt) not in named:
        raise FlowprepError(f"--flow-ckpt {str(ckpt)!r}: no such file, and not one of {names}")
    url = named[str(ckpt)]
    cached = checkpoint_cache_dir() / url.rsplit("/", 1)[1]
    if cached.is_file():
        return cached
    raise FlowprepError(
        f"{model} weights {str(ckpt)!r} are not on this machine ({cached} is missing; nothing is downloaded). "
        f"Fetch {url} on a connected machine and put it at {cached}, or anywhere and pass "
        f"--flow-ckpt /path/to/{cached.name}. Without weights (or a GPU), --flow dis builds with CPU flow."
    )


def import_ptlflow():
    # Its import chain (timm, jsonargparse) warns about its own deprecations, and it prints a notice
    # about an optional CUDA extension to stdout (which would corrupt `--json` output): nothing for our users.
    # Its loguru messages (one per checkpoint loaded) are silenced too.
    import contextlib
    import io

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import ptlflow
    from loguru import logger

    logger.disable("ptlflow")
    return ptlflow


def new_pwcnet():
    """ptlflow's PWC-Net with its own random initialisation (no weights loaded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_ptlflow().get_model("pwcnet")


def read_state_dict(path: Path) -> dict:
    """The tensors of a ptlflow-style checkpoint ({"state_dict": ...}) or of a bare state dict."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip errors, truncated files: all mean "not loadable"
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise FlowprepError(
            f"{path} is not a readable weights-only checkpoint (tensors and plain containers; Python objects "
            f"are never unpickled): {first}"
        ) from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FlowprepError(f"{path} is not a PWC-Net checkpoint: no state dict of tensors in it")
    return dict(state)


def load_pwcnet(path: Path):
    """ptlflow's PWC-Net with the weights in ``path``; every parameter must match."""
    state = read_state_dict(path)
    model = new_pwcnet()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        parts = [f"{label} {len(keys)} (e.g. {', '.join(keys[:3])})"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", reshaped))
                 if keys]
        raise FlowprepError(f"{path} is not a ptlflow PWC-Net checkpoint: parameters {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def gray_images(prev: np.ndarray, next: np.ndarray, device: str):
    """uint8 [B,H,W] pairs as ptlflow's models take them: [B,2,3,H,W] floats in 0..1 on ``device``,
    gray replicated to three channels (uint8 crosses to the GPU: 4x fewer bytes)."""
    import torch

    pairs = torch.from_numpy(np.stack([prev, next], axis=1)).to(device)  # [B,2,H,W] uint8
    return (pairs.float() / 255.0)[:, :, None].expand(-1, -1, 3, -1, -1)


IMPLS = ("fast", "ptlflow")
DTYPES = ("fp32", "bf16", "fp16")


@register_backend("pwcnet")
class PWCNetBackend(FlowBackend):
    """Holds one PWC-Net; each call runs ``batch_pairs`` pairs per forward pass.

    ``impl="fast"`` (default) runs ptlflow's layers and weights through ``pwcnet_fast.FastPWCNet``
    (batched cost volume, both frames in one pyramid pass, gray input folded into the first
    convolution): ptlflow's flow within float rounding (see tests/flow/test_pwcnet_fast.py).
    ``impl="ptlflow"`` calls ptlflow's own forward, the reference.

    Fast path only: ``dtype`` "bf16"/"fp16" runs under ``torch.autocast`` (fp16 on CUDA only; on a
    CPU without bf16 instructions bf16 is slower than fp32: `flowprep bench flow` measures it), ``channels_last``
    (default: on) stores activations NHWC, which oneDNN and cuDNN convolve without reorders,
    ``compile`` wraps the forward in ``torch.compile`` (batches padded to ``batch_pairs`` so one
    graph serves every call). On CUDA, frames travel as uint8 through pinned host buffers on their
    own stream, overlapping the next batch's upload and the last one's download with compute.
    """

    runs_in = "actor"
    devices = ("cpu", "cuda")
    CPU_MAX_PAIRS = 64  # per forward on the CPU: larger batches only take more memory (`flowprep bench flow`)

    @classmethod
    def options_from(cls, cfg: FlowConfig) -> dict[str, Any]:
        return {"ckpt": cfg.ckpt, "device": cfg.device, "batch_pairs": cfg.batch_pairs, "dtype": cfg.precision}

    @classmethod
    def check(cls, cfg: FlowConfig, model: str | None) -> None:
        resolve_checkpoint(cfg.ckpt)

    def __init__(
        self,
        ckpt: str | os.PathLike | None = "things",
        device: str = "auto",
        batch_pairs: int = 512,
        impl: str = "fast",
        dtype: str = "fp32",
        channels_last: bool = True,
        compile: bool = False,
    ):
        import torch

        if int(batch_pairs) < 1:
            raise FlowprepError(f"batch_pairs must be at least 1, got {batch_pairs}")
        if impl not in IMPLS:
            raise FlowprepError(f"unknown PWC-Net impl {impl!r}; use {' or '.join(IMPLS)}")
        if dtype not in DTYPES:
            raise FlowprepError(f"unknown PWC-Net dtype {dtype!r}; use {', '.join(DTYPES)}")
        if impl == "ptlflow" and (dtype != "fp32" or compile):
            raise FlowprepError("dtype and compile apply to impl='fast' only; ptlflow's forward runs as ptlflow wrote it")
        self.options = {
            "ckpt": None if ckpt is None else str(ckpt),
            "device": device,
            "batch_pairs": int(batch_pairs),
            "impl": impl,
            "dtype": dtype,
            "channels_last": bool(channels_last),
            "compile": bool(compile),
        }
        self.ckpt_path = resolve_checkpoint(ckpt)
        self.device = str(resolve_device(device))
        if dtype == "fp16" and not self.device.startswith("cuda"):
            raise FlowprepError("dtype fp16 needs a CUDA device (CPU autocast is bf16); use fp32 or bf16")
        self.batch_pairs = int(batch_pairs)
        self.impl = impl
        self.dtype = dtype
        self.model = load_pwcnet(self.ckpt_path).to(self.device)
        if self.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True  # one input size for a whole build: tune once
        self.fast = None
        if impl == "fast":
            from .pwcnet_fast import FastPWCNet

            self.fast = FastPWCNet(self.model, channels_last=channels_last).eval()
            self._forward = torch.compile(self.fast, dynamic=False) if compile else self.fast
        self._sha256: str | None = None

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        if self.impl == "ptlflow":
            return self._compute_ptlflow(prev, next)
        if self.device.startswith("cuda"):
            return self._compute_cuda(prev, next)
        return self._compute_cpu(prev, next)

    # -- ptlflow's own forward: the reference --------------------------------------------------
    def _compute_ptlflow(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty((len(prev), 2) + prev.shape[1:], np.float32)
        with torch.inference_mode():
            for start in range(0, len(prev), self.batch_pairs):
                stop = start + self.batch_pairs
                flows = self.model({"images": gray_images(prev[start:stop], next[start:stop], self.device)})["flows"]
                out[start:stop] = flows[:, 0].float().cpu().numpy()
        return out

    # -- the fast path -------------------------------------------------------------------------
    def _autocast(self):
        import contextlib

        import torch

        if self.dtype == "fp32":
            return contextlib.nullcontext()
        dt = torch.bfloat16 if self.dtype == "bf16" else torch.float16
        return torch.autocast(self.device.split(":")[0], dtype=dt)

    def _run(self, pairs, full: int):
        """Flow of one [B,2,H,W] uint8 batch on the device; under torch.compile a short last batch
        is padded to ``full`` pairs, so one compiled graph serves every call."""
        import torch

        b = pairs.shape[0]
        if self.options["compile"] and b < full:
            pairs = torch.cat([pairs, pairs[-1:].expand(full - b, -1, -1, -1)])
        with self._autocast():
            flow = self._forward(pairs)
        return flow[:b]

    def _compute_cpu(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty((len(prev), 2) + prev.shape[1:], np.float32)
        step = min(self.batch_pairs, self.CPU_MAX_PAIRS)
        with torch.inference_mode():
            for start in range(0, len(prev), step):
                stop = start + step
                pairs = torch.from_numpy(np.stack([prev[start:stop], next[start:stop]], axis=1))
                out[start:stop] = self._run(pairs, step).float().numpy()
        return out

    def _compute_cuda(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        """Batches through pinned buffers: upload of batch i+1 and download of batch i-1 on their
        own streams while batch i computes; the host fills the next buffer meanwhile."""
        import torch

        n, (h, w) = len(prev), prev.shape[1:]
        out = np.empty((n, 2, h, w), np.float32)
        bs = min(self.batch_pairs, n)
        dev = torch.device(self.device)
        compute = torch.cuda.current_stream(dev)
        up, down = torch.cuda.Stream(dev), torch.cuda.Stream(dev)
        host_in = [torch.empty((bs, 2, h, w), dtype=torch.uint8).pin_memory() for _ in range(2)]
        host_out = [torch.empty((bs, 2, h, w), dtype=torch.float32).pin_memory() for _ in range(2)]
        uploaded: list = [None, None]  # event: host_in[k] may be refilled
        pending: list = [None, None]  # (event, start, stop) of a download into host_out[k]

        def drain(k: int) -> None:
            if pending[k] is not None:
                event, a, b = pending[k]
                event.synchronize()
                out[a:b] = host_out[k][: b - a].numpy()
                pending[k] = None

        with torch.inference_mode():
            for i, start in enumerate(range(0, n, bs)):
                k, stop = i % 2, min(start + bs, n)
                m = stop - start
                if uploaded[k] is not None:
                    uploaded[k].synchronize()
                buf = host_in[k].numpy()
                buf[:m, 0], buf[:m, 1] = prev[start:stop], next[start:stop]
                with torch.cuda.stream(up):
                    pairs = host_in[k][:m].to(dev, non_blocking=True)
                    uploaded[k] = torch.cuda.Event()
                    uploaded[k].record(up)
                compute.wait_event(uploaded[k])
                pairs.record_stream(compute)  # allocated on `up`, used on `compute`
                flow = self._run(pairs, bs).float()
                computed = torch.cuda.Event()
                computed.record(compute)
                drain(k)  # host_out[k] free again (the batch from two steps back)
                with torch.cuda.stream(down):
                    down.wait_event(computed)
                    host_out[k][:m].copy_(flow, non_blocking=True)
                    flow.record_stream(down)
                    event = torch.cuda.Event()
                    event.record(down)
                pending[k] = (event, start, stop)
            drain(0)
            drain(1)
        return out

    def describe(self) -> dict[str, Any]:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.ckpt_path)
        return {**super().describe(), "ckpt": str(self.ckpt_path), "ckpt_sha256": self._sha256}


def save_random_pwcnet_checkpoint(path: str | os.PathLike, seed: int = 0) -> Path:
    """A checkpoint of ptlflow's PWC-Net with a seeded random init, in the format the loader reads
    (for tests and CI: no weights can be downloaded there)."""
    import torch

    torch.manual_seed(seed)
    model = new_pwcnet()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": {"seed": seed}}, path)
    return path
