"""Read clips out of one shard file (no torch here: usable by verify, stats and preview too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import h5py
import hdf5plugin  # noqa: F401  registers the zstd filter the writer uses
import numpy as np

from ..errors import FlowprepError
from ..shards.layout import FORMAT_VERSION, STRING_FIELDS

STREAMS = ("gray", "flow", "landmarks", "affine", "audio")
TEXT_FIELDS = ("text", "word_times")  # per-clip strings added after format 1's first shards


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
        try:
            self.offset = self.h5["offset"][()]
            self.flow_offset = self.h5["flow_offset"][()]
            self.meta: dict[str, np.ndarray] = {k: self.h5[k].asstr()[()] for k in STRING_FIELDS}
            for key in TEXT_FIELDS:  # shards from before these fields lack them
                if key in self.h5:
                    self.meta[key] = self.h5[key].asstr()[()]
            for key in ("label", "length", "fps", "boundary"):
                self.meta[key] = self.h5[key][()]
            self.qc = {k: v[()] for k, v in self.h5["qc"].items()}
            # audio (shards built with --audio): its own offsets, and where frame 0 starts in each clip's samples
            self.audio_offset = self.h5["audio_offset"][()] if "audio_offset" in self.h5 else None
            self.audio_start = self.h5["audio_start"][()] if "audio_start" in self.h5 else None
            self.audio_rate = int(self.attrs.get("audio_rate", 0))
        except (OSError, KeyError, ValueError) as exc:
            self.h5.close()
            raise FlowprepError(f"{self.path} is damaged ({exc}); run `flowprep verify` on its folder") from None

    def __len__(self) -> int:
        return len(self.offset) - 1

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> "ShardFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def clip(self, i: int, streams: Sequence[str] = ("gray", "flow"), flow_dtype: str = "float32") -> dict[str, Any]:
        """One clip's metadata and streams. ``flow_dtype``: "float32" or "float16" give pixels; "stored"
        gives the shard's integers (pixels = stored * ``flow_scale``, in the sample), 4x fewer bytes to
        move between processes: dequantize after batching, on the GPU."""
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
        if "text" in self.meta:  # what is said; shards from before the field have none
            sample["text"] = str(self.meta["text"][i])
            # a JSON list of [word, start_s, end_s] ("" when unknown): a string batches like any other
            sample["word_times"] = str(self.meta["word_times"][i]) if "word_times" in self.meta else ""
        for name in streams:
            if name not in STREAMS:
                raise FlowprepError(f"unknown stream {name!r}; shards hold {', '.join(STREAMS)}")
            try:
                if name == "flow":
                    fa, fb = int(self.flow_offset[i]), int(self.flow_offset[i + 1])
                    sample["flow"] = _flow_as(self.h5["flow"][fa:fb], self.flow_scale, flow_dtype)
                    sample["flow_scale"] = 1.0 if flow_dtype != "stored" else self.flow_scale
                elif name == "audio":
                    sample["audio"], sample["audio_rate"] = self.audio(i), self.audio_rate
                else:
                    sample[name] = self.h5[name][a:b]
            except (OSError, KeyError, ValueError) as exc:
                raise FlowprepError(f"{self.path}: cannot read {name} of clip {sample['clip_id']} ({exc}); "
                                    f"run `flowprep verify {self.path.parent}` and rebuild the bad shards") from None
        return sample

    @property
    def has_audio(self) -> bool:
        return self.audio_offset is not None and "audio" in self.h5

    def audio(self, i: int) -> np.ndarray:
        """Clip i's audio, int16 [S] at ``audio_rate``, from the start of its frame 0: frame t covers
        samples [t*rate/fps, (t+1)*rate/fps)."""
        if not self.has_audio:
            raise FlowprepError(f"{self.path} holds no audio: build the shards with `flowprep build --audio`")
        a, b = int(self.audio_offset[i]), int(self.audio_offset[i + 1])
        start = int(self.audio_start[i]) if self.audio_start is not None else 0
        return self.h5["audio"][min(a + start, b):b]

    def boundary_mask(self, i: int) -> np.ndarray:
        """(T,) float32: 1 for frames inside the spoken word, 0 outside; all ones when unknown."""
        length = int(self.meta["length"][i])
        start, end = self.meta["boundary"][i]
        if not np.isfinite(start) or not np.isfinite(end):
            return np.ones(length, np.float32)
        t = (np.arange(length) + 0.5) / float(self.meta["fps"][i])
        return ((t >= start) & (t <= end)).astype(np.float32)


def _flow_as(stored: np.ndarray, scale: float, dtype: str) -> np.ndarray:
    if dtype == "stored":
        return stored
    if dtype not in ("float32", "float16"):
        raise FlowprepError(f"flow_dtype {dtype!r}: use float32, float16 or stored")
    out = stored.astype(np.float32)
    out *= np.float32(scale)
    return out if dtype == "float32" else out.astype(np.float16)
