"""Any ptlflow model as a flow backend: ``--flow ptlflow:raft_small`` (or neuflow2, rapidflow, ...).

Why: to compare flow methods on the same crops, a user names one of ptlflow's models instead of
waiting for flowprep to wrap it. ptlflow builds the model and loads its checkpoint with its own
code (``torch.load(weights_only=True)``); flowprep only finds the file on this machine (a path, or
one of the model's published names in torch hub's cache, never downloaded), feeds gray pairs
replicated to the model's three input channels in 0..1, runs batches of ``batch_pairs`` pairs in
the build's flow actor (GPU when there is one), and stores ptlflow's flow through the same
quantisation as PWC-Net's.

The forward is ptlflow's own (its input padding, resizing and flow scaling included), so the
stored flow is what ptlflow computes for those weights, up to batching's float rounding and the
stored type's quantisation. Some models cannot run on a 112 px crop: RAFT's coarsest correlation
level shrinks to one pixel there and its lookup divides by zero (every flow value NaN). On the
first call at a frame size the backend runs one probe pair at 1x, then 2x and 4x that size (bilinear)
and keeps the least factor whose flow is finite; the flow is resized back and divided by the
factor. The factor depends on the model and the size only, never on the data, and ``describe``
records the ones used. PWC-Net keeps its own faster backend (``--flow pwcnet``);
``ptlflow:pwcnet`` runs ptlflow's forward of the same network.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FlowConfig
from ..errors import FlowprepError
from ..files import file_sha256
from .base import FlowBackend, register_backend
from ..runtime import resolve_device
from .pwcnet import gray_images, import_ptlflow, resolve_checkpoint

MODELS_EXAMPLE = "raft_small, neuflow2, sea_raft_s, rapidflow"


def model_reference(model: str):
    """ptlflow's class for ``model``, or a FlowprepError listing the names it knows."""
    ptlflow = import_ptlflow()
    names = ptlflow.get_model_names()
    if model not in names:
        stem = model.split("_")[0]
        close = sorted((n for n in names if stem in n), key=lambda n: (not n.startswith(stem), n))[:8]
        hint = f"; similar: {', '.join(close)}" if close else f"; e.g. {MODELS_EXAMPLE}"
        raise FlowprepError(f"ptlflow has no model {model!r} ({len(names)} models{hint})")
    return ptlflow.get_model_reference(model)


def named_checkpoints(model: str) -> dict[str, str]:
    """The published weights ptlflow lists for ``model``: name -> URL (the file name is the cache's)."""
    return dict(getattr(model_reference(model), "pretrained_checkpoints", None) or {})


def resolve_model_checkpoint(model: str, ckpt: str | os.PathLike | None) -> Path:
    """The local weights file for ``model``: a path, or a published name found in the hub cache."""
    return resolve_checkpoint(ckpt, named=named_checkpoints(model), model=f"ptlflow {model}")


def load_model(model: str, path: Path | None):
    """ptlflow's ``model``, with the weights in ``path`` loaded by ptlflow (None: its random init)."""
    ptlflow = import_ptlflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net = ptlflow.get_model(model, ckpt_path=None if path is None else str(path))
        except (RuntimeError, KeyError, ValueError, OSError, EOFError) as exc:  # ptlflow's load_state_dict, torch.load
            text = str(exc).strip().splitlines()
            first = text[0][:200] if text else type(exc).__name__
            raise FlowprepError(f"{path} is not a ptlflow {model} checkpoint (read weights-only): {first}") from None
    return net.eval()


@register_backend("ptlflow")
class PtlflowBackend(FlowBackend):
    """One ptlflow model; each call runs ``batch_pairs`` pairs per forward pass (at most
    ``CPU_MAX_PAIRS`` on the CPU, where larger batches only take more memory)."""

    runs_in = "actor"
    devices = ("cpu", "cuda")
    family = True
    example = "raft_small"
    CPU_MAX_PAIRS = 64

    def __init__(self, model: str, ckpt: str | os.PathLike | None = None, device: str = "auto",
                 batch_pairs: int = 512):
        if int(batch_pairs) < 1:
            raise FlowprepError(f"batch_pairs must be at least 1, got {batch_pairs}")
        self.name = f"ptlflow:{model}"
        self.model_name = model
        self.options = {"ckpt": None if ckpt is None else str(ckpt), "device": device, "batch_pairs": int(batch_pairs)}
        self.ckpt_path = resolve_model_checkpoint(model, ckpt)
        self.device = str(resolve_device(device))
        self.batch_pairs = int(batch_pairs)
        self.model = load_model(model, self.ckpt_path).to(self.device)
        self._sha256: str | None = None
        self.upscale: dict[tuple[int, int], int] = {}  # frame size -> the factor it runs at

    @classmethod
    def options_from(cls, cfg: FlowConfig) -> dict[str, Any]:
        return {"ckpt": cfg.ckpt, "device": cfg.device, "batch_pairs": cfg.batch_pairs}

    @classmethod
    def check(cls, cfg: FlowConfig, model: str | None) -> None:
        resolve_model_checkpoint(str(model), cfg.ckpt)

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        import torch

        factor = self.factor_for(*prev.shape[1:])
        out = np.empty((len(prev), 2) + prev.shape[1:], np.float32)
        step = self.batch_pairs if self.device.startswith("cuda") else min(self.batch_pairs, self.CPU_MAX_PAIRS)
        with torch.inference_mode():
            for start in range(0, len(prev), step):
                stop = start + step
                out[start:stop] = self.forward(prev[start:stop], next[start:stop], factor).cpu().numpy()
        return out

    def forward(self, prev: np.ndarray, next: np.ndarray, factor: int = 1):
        """ptlflow's flow for [B,H,W] uint8 pairs as a float32 [B,2,H,W] tensor; the frames enlarged
        ``factor`` times first (bilinear), the flow brought back to H,W and divided by it."""
        import torch.nn.functional as F

        images = gray_images(prev, next, self.device)  # [B,2,3,H,W]
        b, h, w = prev.shape
        if factor > 1:
            images = F.interpolate(images.reshape(b * 2, 3, h, w), scale_factor=factor, mode="bilinear",
                                   align_corners=False).reshape(b, 2, 3, h * factor, w * factor)
        flow = self.model({"images": images})["flows"][:, 0].float()
        if factor > 1:
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False) / factor
        return flow

    def factor_for(self, h: int, w: int) -> int:
        """The least of 1, 2, 4 at which the model's flow of a textured probe pair is finite."""
        import torch

        if (h, w) not in self.upscale:
            rng = np.random.default_rng(0)
            probe = rng.integers(0, 256, (1, h + 2, w + 2), dtype=np.uint8)
            a, b = probe[:, 1:h + 1, 1:w + 1], probe[:, 2:h + 2, :w]  # the same texture, shifted a pixel
            for factor in (1, 2, 4):
                try:
                    with torch.inference_mode():
                        ok = bool(torch.isfinite(self.forward(a, b, factor)).all())
                except RuntimeError:  # a level shrank to nothing
                    ok = False
                if ok:
                    self.upscale[(h, w)] = factor
                    break
            else:
                raise FlowprepError(f"ptlflow {self.model_name} gives no finite flow on {w}x{h} frames, even "
                                    "enlarged 4x: pick another model")
        return self.upscale[(h, w)]

    def describe(self) -> dict[str, Any]:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.ckpt_path)
        return {**super().describe(), "model": self.model_name, "ckpt": str(self.ckpt_path), "ckpt_sha256": self._sha256,
                "upscale": {f"{w}x{h}": f for (h, w), f in self.upscale.items()}}


def save_random_checkpoint(path: str | os.PathLike, model: str, seed: int = 0) -> Path:
    """A checkpoint of ptlflow's ``model`` with a seeded random init, in ptlflow's format (for tests,
    CI and the benchmark: no weights can be downloaded there)."""
    import torch

    torch.manual_seed(seed)
    net = load_model(model, None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "hyper_parameters": {"seed": seed}}, path)
    return path
