"""Read clips out of one shard file, next to the writer that makes it. No torch here: verify, stats
and preview use it as well as ShardDataset. What it reads, and how each dataset is indexed, comes
from the schema table (schema.py): a clip's per-clip fields, its time-major streams sliced by their
unit's offsets, optional rows only where the shard has them (older shards lack the newer ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import h5py
import hdf5plugin  # noqa: F401  registers the compression filters the writer uses
import numpy as np

from ..errors import FlowprepError
from .layout import FORMAT_VERSION
from .schema import CLIP, FRAME, GROUP, INDEX, PAIR, SAMPLE, row, rows
from .schema import streams as stored_streams

# per-clip fields a sample carries, beside its streams (the others stay in ``meta``)
SAMPLE_FIELDS = ("clip_id", "word", "label", "split", "fps", "text", "word_times")


class ShardFile:
    """One open shard. Per-clip metadata and offsets are read once at open; streams per request."""

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
        self.audio_rate = int(self.attrs.get("audio_rate", 0))
        try:
            self.meta: dict[str, np.ndarray] = {}  # every per-clip row the shard has
            self.offsets: dict[str, np.ndarray] = {}  # unit (frame, pair, sample) -> its (N+1,) offsets
            for r in rows((CLIP, INDEX)):
                if r.optional and r.name not in self.h5:
                    continue
                ds = self.h5[r.name]
                value = ds.asstr()[()] if r.dtype == "str" else ds[()]
                if r.per == INDEX:
                    self.offsets[r.indexes] = value
                else:
                    self.meta[r.name] = value
            self.qc = {k: v[()] for k, v in self.h5[rows(GROUP)[0].name].items()}
        except (OSError, KeyError, ValueError) as exc:
            self.h5.close()
            raise FlowprepError(f"{self.path} is damaged ({exc}); run `flowprep verify` on its folder") from None

    @property
    def offset(self) -> np.ndarray:
        """(N+1,) rows of clip i in the per-frame streams."""
        return self.offsets[FRAME]

    @property
    def flow_offset(self) -> np.ndarray:
        """(N+1,) rows of clip i in the per-pair streams (flow)."""
        return self.offsets[PAIR]

    @property
    def audio_offset(self) -> np.ndarray | None:
        return self.offsets.get(SAMPLE)

    @property
    def audio_start(self) -> np.ndarray | None:
        return self.meta.get("audio_start")

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
        sample: dict[str, Any] = {}
        for key in SAMPLE_FIELDS:
            if key in self.meta:  # text and word_times: shards from before them have neither
                sample[key] = _plain(self.meta[key][i], row(key).dtype)
        sample["boundary"] = self.boundary_mask(i)
        sample["qc"] = {k: float(v[i]) for k, v in self.qc.items()}
        known = stored_streams()
        for name in streams:
            if name not in known:
                raise FlowprepError(f"unknown stream {name!r}; shards hold {', '.join(known)}")
            try:
                if name == "audio":
                    sample["audio"], sample["audio_rate"] = self.audio(i), self.audio_rate
                    continue
                unit = self.offsets[row(name).per]
                data = self.h5[name][int(unit[i]):int(unit[i + 1])]
                if name == "flow":
                    sample["flow"] = _flow_as(data, self.flow_scale, flow_dtype)
                    sample["flow_scale"] = 1.0 if flow_dtype != "stored" else self.flow_scale
                else:
                    sample[name] = data
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


def _plain(value, dtype: str):
    """A per-clip value as plain Python (str, int or float), by its schema dtype."""
    if dtype == "str":
        return str(value)
    return int(value) if dtype.startswith(("int", "uint")) else float(value)


def _flow_as(stored: np.ndarray, scale: float, dtype: str) -> np.ndarray:
    if dtype == "stored":
        return stored
    if dtype not in ("float32", "float16"):
        raise FlowprepError(f"flow_dtype {dtype!r}: use float32, float16 or stored")
    out = stored.astype(np.float32)
    out *= np.float32(scale)
    return out if dtype == "float32" else out.astype(np.float16)
