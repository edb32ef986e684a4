"""Read clips out of one shard file (no torch here: usable by verify, stats and preview too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import h5py
import hdf5plugin  # noqa: F401  registers the zstd filter the writer uses
import numpy as np

from ..errors import FlowprepError
from ..shards.layout import FORMAT_VERSION, STRING_FIELDS

STREAMS = ("gray", "flow", "landmarks", "affine")


class ShardFile:
    """One open shard. Per-clip metadata is read once at open; frames are read per request."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.h5 = h5py.File(self.path, "r")
        except (OSError, ValueError) as exc:
            raise FlowprepError(f"cannot open shard {self.path}: {exc}. Run `flowprep verify` on its folder.") from None
        version = int(self.h5.attrs.get("format_version", -1))
        if version < 1 or version > FORMAT_VERSION:
            self.h5.close()
            raise FlowprepError(f"{self.path} has shard format {version}; this flowprep reads 1..{FORMAT_VERSION}")
        self.attrs = dict(self.h5.attrs)
        self.flow_scale = float(self.attrs.get("flow_scale", 1.0))
        self.offset = self.h5["offset"][()]
        self.flow_offset = self.h5["flow_offset"][()]
        self.meta: dict[str, np.ndarray] = {k: self.h5[k].asstr()[()] for k in STRING_FIELDS}
        for key in ("label", "length", "fps", "boundary"):
            self.meta[key] = self.h5[key][()]
        self.qc = {k: v[()] for k, v in self.h5["qc"].items()}

    def __len__(self) -> int:
        return len(self.offset) - 1

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> "ShardFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def clip(self, i: int, streams: Sequence[str] = ("gray", "flow")) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"clip {i} out of range for {self.path.name} ({len(self)} clips)")
        a, b = int(self.offset[i]), int(self.offset[i + 1])
        sample: dict[str, Any] = {
            "clip_id": str(self.meta["clip_id"][i]),
            "word": str(self.meta["word"][i]),
            "label": int(self.meta["label"][i]),
            "split": str(self.meta["split"][i]),
            "fps": float(self.meta["fps"][i]),
            "boundary": self.boundary_mask(i),
            "qc": {k: float(v[i]) for k, v in self.qc.items()},
        }
        for name in streams:
            if name == "flow":
                fa, fb = int(self.flow_offset[i]), int(self.flow_offset[i + 1])
                sample["flow"] = self.h5["flow"][fa:fb].astype(np.float32) * np.float32(self.flow_scale)
            elif name in STREAMS:
                sample[name] = self.h5[name][a:b]
            else:
                raise FlowprepError(f"unknown stream {name!r}; shards hold {', '.join(STREAMS)}")
        return sample

    def boundary_mask(self, i: int) -> np.ndarray:
        """(T,) float32: 1 for frames inside the spoken word, 0 outside; all ones when unknown."""
        length = int(self.meta["length"][i])
        start, end = self.meta["boundary"][i]
        if not np.isfinite(start) or not np.isfinite(end):
            return np.ones(length, np.float32)
        t = (np.arange(length) + 0.5) / float(self.meta["fps"][i])
        return ((t >= start) & (t <= end)).astype(np.float32)
