"""PWC-Net through ptlflow: the seed paper's flow, batched over many pairs from many clips.

Weights never download at run time. ``ckpt`` is a local path, or "things"/"sintel", which must
already sit in torch hub's checkpoint cache (where ptlflow itself keeps them); otherwise the error
says which file to put where. Grayscale crops are replicated to three channels in 0..1, and
ptlflow's own forward does the resize to a multiple of 64 and scales flow back, so weights
trained for ptlflow's pwcnet give exactly ptlflow's flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FlowprepError
from ..shards.files import file_sha256
from .base import FlowBackend, register_backend

# ptlflow 0.4's published PWC-Net weights (the model class lists the same; checked at load).
NAMED_CHECKPOINTS = {
    "things": "https://github.com/hmorimitsu/ptlflow/releases/download/weights1/pwcnet-things-6a2e540b.ckpt",
    "sintel": "https://github.com/hmorimitsu/ptlflow/releases/download/weights1/pwcnet-sintel-533815e5.ckpt",
}


def checkpoint_cache_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_checkpoint(ckpt: str | None) -> Path:
    """The local file for ``ckpt`` (a path or a named checkpoint), or a FlowprepError saying how to get it."""
    if not ckpt:
        raise FlowprepError("PWC-Net needs weights: pass --flow-ckpt things|sintel|/path/to/pwcnet.ckpt")
    path = Path(ckpt).expanduser()
    if path.is_file():
        return path.resolve()
    if ckpt in NAMED_CHECKPOINTS:
        url = NAMED_CHECKPOINTS[ckpt]
        cached = checkpoint_cache_dir() / url.rsplit("/", 1)[1]
        if cached.is_file():
            return cached
        raise FlowprepError(
            f"PWC-Net weights {ckpt!r} are not on this machine and nothing is downloaded at run time. "
            f"Download {url} and put it at {cached} (or anywhere, and pass --flow-ckpt /path/to/{cached.name}); "
            "on a connected machine `python -c \"import ptlflow; ptlflow.get_model('pwcnet', ckpt_path='"
            f"{ckpt}')\"` fills that cache. Without a GPU or weights, --flow dis builds with CPU flow."
        )
    raise FlowprepError(f"--flow-ckpt {ckpt!r}: no such file, and not one of {', '.join(NAMED_CHECKPOINTS)}")


def _load_model(path: Path):
    import ptlflow

    # ptlflow's loader reads local files with torch.load(weights_only=True): no unpickling of objects.
    try:
        return ptlflow.get_model("pwcnet", ckpt_path=str(path))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise FlowprepError(f"{path} is not a ptlflow PWC-Net checkpoint: {str(exc).splitlines()[0][:300]}") from None


@register_backend("pwcnet")
class PWCNetBackend(FlowBackend):
    name = "pwcnet"

    def __init__(self, ckpt: str | None = "things", device: str = "auto", batch_pairs: int = 512, **_ignored):
        import torch

        self.ckpt_path = resolve_checkpoint(ckpt)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise FlowprepError("--device cuda, but torch sees no CUDA device: use --device auto or cpu")
        self.device = device
        self.batch_pairs = max(1, int(batch_pairs))
        self.model = _load_model(self.ckpt_path).eval().to(device)
        self._sha256: str | None = None

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty((len(prev), 2) + prev.shape[1:], np.float32)
        with torch.inference_mode():
            for start in range(0, len(prev), self.batch_pairs):
                stop = start + self.batch_pairs
                pair = np.stack([prev[start:stop], next[start:stop]], axis=1)  # [B,2,H,W]
                images = torch.from_numpy(pair).to(self.device, non_blocking=True).float().div_(255.0)
                images = images[:, :, None].expand(-1, -1, 3, -1, -1)  # gray -> 3 channels
                flows = self.model({"images": images})["flows"][:, 0]
                out[start:stop] = flows.float().cpu().numpy()
        return out

    def describe(self) -> dict[str, Any]:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.ckpt_path)
        return {**super().describe(), "ckpt": str(self.ckpt_path), "ckpt_sha256": self._sha256,
                "batch_pairs": self.batch_pairs}


def save_random_pwcnet_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """A ptlflow-format PWC-Net checkpoint of a seeded random init (tests: no weights can be downloaded)."""
    import ptlflow
    import torch

    torch.manual_seed(seed)
    model = ptlflow.get_model("pwcnet")
    path = Path(path)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": {}}, path)
    return path
