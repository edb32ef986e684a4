"""PWC-Net through ptlflow: the seed paper's flow, batched over many pairs from many clips.

Weights: ``ckpt`` is a local file, or "things"/"sintel", ptlflow's published weights, looked up in
torch hub's checkpoint cache (where ptlflow itself keeps them) and downloaded there, with a short
timeout and a checksum, when missing. Offline, or with FLOWPREP_OFFLINE=1, a missing named
checkpoint is an immediate FlowprepError that says which file to put where.

Checkpoints are read with ``torch.load(weights_only=True)`` (tensors and plain containers only,
never arbitrary objects) and their ``state_dict`` (or the file itself, when it is a bare state
dict) is loaded strictly into ptlflow's own PWC-Net. Hyper-parameters in the file are not needed
for inference and are not read.

Input: grayscale replicated to three channels, 0..1 floats, [B,2,3,H,W] as ptlflow's models take
it; ptlflow's forward resizes to a multiple of 64 and scales the flow back, so the output is
exactly ptlflow's flow for those weights. ptlflow is imported only when a backend is built
(importing it takes seconds).
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlowprepError
from .base import FlowBackend, register_backend

# ptlflow's published weights for its "pwcnet" model, which is PWC-DC-Net (the paper's network,
# with dense connections; the plain variant is "pwcnet_nodc" and its pwcnet-*.ckpt files do not
# fit). The hex part of each file name is the start of the file's sha256.
NAMED_CHECKPOINTS = {
    "things": "https://github.com/hmorimitsu/ptlflow/releases/download/weights1/pwcdcnet-things-cc223701.ckpt",
    "sintel": "https://github.com/hmorimitsu/ptlflow/releases/download/weights1/pwcdcnet-sintel-c7d08a46.ckpt",
}
OFFLINE_ENV = "FLOWPREP_OFFLINE"
DOWNLOAD_TIMEOUT_S = 15.0  # per connect / read: a blocked network fails in seconds, not minutes
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.")


def checkpoint_cache_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_checkpoint(ckpt: str | os.PathLike | None, download: bool | None = None) -> Path:
    """The local file for ``ckpt`` (a path, "things" or "sintel"), or a FlowprepError saying how to get it.

    A named checkpoint missing from the cache is downloaded unless ``download`` is False (default:
    download unless $FLOWPREP_OFFLINE is set).
    """
    if not ckpt:
        raise FlowprepError("PWC-Net needs weights: pass --flow-ckpt things|sintel|/path/to/pwcnet.ckpt")
    path = Path(ckpt).expanduser()
    if path.is_file():
        return path.resolve()
    if str(ckpt) not in NAMED_CHECKPOINTS:
        raise FlowprepError(f"--flow-ckpt {str(ckpt)!r}: no such file, and not one of {', '.join(NAMED_CHECKPOINTS)}")
    url = NAMED_CHECKPOINTS[str(ckpt)]
    cached = checkpoint_cache_dir() / url.rsplit("/", 1)[1]
    if cached.is_file():
        return cached
    if download is None:
        download = not os.environ.get(OFFLINE_ENV)
    why = f"${OFFLINE_ENV} is set" if not download else ""
    if download:
        try:
            return _download(url, cached)
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a bad checksum
            why = f"the download failed: {str(exc)[:200]}"
    raise FlowprepError(
        f"PWC-Net weights {str(ckpt)!r} are not on this machine ({cached} is missing) and {why}. "
        f"Fetch {url} on a connected machine and put it at {cached}, or anywhere and pass "
        f"--flow-ckpt /path/to/{cached.name}. Without weights (or a GPU), --flow dis builds with CPU flow."
    )


def _download(url: str, dest: Path) -> Path:
    """Fetch ``url`` to ``dest`` atomically, checking the sha256 prefix its name carries."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as fh:
            while block := response.read(1 << 20):
                fh.write(block)
        expected = _HASH_IN_NAME.search(dest.name)
        if expected and not file_sha256(tmp).startswith(expected.group(1)):
            raise ValueError(f"{url} does not match the checksum in its name ({expected.group(1)}...)")
        os.replace(tmp, dest)  # concurrent downloads each finish a whole file; the last rename wins
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _ptlflow():
    # Its import chain (timm, jsonargparse) warns about its own deprecations; nothing for our users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ptlflow
    return ptlflow


def new_pwcnet():
    """ptlflow's PWC-Net with its own random initialisation (no weights loaded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _ptlflow().get_model("pwcnet")


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


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FlowprepError(f"--device {device}, but torch sees no CUDA device: use --device auto or cpu")
        return device
    if device != "cpu":
        raise FlowprepError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


@register_backend("pwcnet")
class PWCNetBackend(FlowBackend):
    """Holds one PWC-Net; each call runs ``batch_pairs`` pairs per forward pass."""

    def __init__(self, ckpt: str | os.PathLike | None = "things", device: str = "auto", batch_pairs: int = 512):
        import torch

        if int(batch_pairs) < 1:
            raise FlowprepError(f"batch_pairs must be at least 1, got {batch_pairs}")
        self.options = {"ckpt": None if ckpt is None else str(ckpt), "device": device, "batch_pairs": int(batch_pairs)}
        self.ckpt_path = resolve_checkpoint(ckpt)
        self.device = resolve_device(device)
        self.batch_pairs = int(batch_pairs)
        self.model = load_pwcnet(self.ckpt_path).to(self.device)
        if self.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True  # one input size for a whole build: tune once
        self._sha256: str | None = None

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty((len(prev), 2) + prev.shape[1:], np.float32)
        with torch.inference_mode():
            for start in range(0, len(prev), self.batch_pairs):
                stop = start + self.batch_pairs
                flows = self.model({"images": self._images(prev[start:stop], next[start:stop])})["flows"]
                out[start:stop] = flows[:, 0].float().cpu().numpy()
        return out

    def _images(self, prev: np.ndarray, next: np.ndarray):
        """[B,2,3,H,W] floats in 0..1 on the model's device (uint8 crosses to the GPU: 4x fewer bytes)."""
        import torch

        pairs = torch.from_numpy(np.stack([prev, next], axis=1)).to(self.device)  # [B,2,H,W] uint8
        return (pairs.float() / 255.0)[:, :, None].expand(-1, -1, 3, -1, -1)

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
