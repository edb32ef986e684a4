"""Checkpoints that hold tensors and plain types only, written atomically, read with weights_only=True."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FlowprepError
from ..files import AtomicFile

LAST, BEST = "last.pt", "best.pt"


def save(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary name, then rename: a crash mid-write leaves the previous checkpoint."""
    with AtomicFile(path) as tmp:
        torch.save(state, tmp)


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FlowprepError(f"no checkpoint at {path}: was the run trained with `flowprep train --out {path.parent}`?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FlowprepError(f"cannot read checkpoint {path} ({exc}); it may be damaged or not a flowprep "
                            "checkpoint") from None


def rng_state() -> dict[str, Any]:
    """Every global generator, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
