"""One configuration for a build, with a fingerprint of everything that changes the shards.

The fingerprint decides whether a rerun may resume into an existing output folder: fields that
only change *how fast* or *where* the build runs (workers, device, Ray address, batch sizes) are
left out of it, fields that change the bytes of the shards are in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import FlowprepError

# Fields that do not change shard contents; excluded from the fingerprint.
RUNTIME_FIELDS = frozenset({"device", "batch_pairs", "workers", "ray_address", "limit", "stall_timeout"})
# Fields that only matter with audio on; left out of the fingerprint when it is off.
AUDIO_FIELDS = ("audio", "audio_rate")
# Fields added after the first builds: in the fingerprint only when they differ from these values, so
# folders built before them keep their fingerprint (and resume).
LATER_DEFAULTS = {"min_frames": 2, "words": None, "splits": None}
SPLIT_NAMES = ("train", "val", "test")
# The names each option accepts: the command line offers these, and the dataclasses refuse others, so
# the Python API refuses what `flowprep build` refuses. (Layouts are checked by flowprep.sources.)
FLOW_BACKENDS = ("pwcnet", "dis", "farneback")
DIS_PRESETS = ("ultrafast", "fast", "medium")
FLOW_DTYPES = ("int8", "int16", "float16")
FLOW_PRECISIONS = ("fp32", "bf16", "fp16")
FLOW_DEVICES = ("auto", "cpu", "cuda")
DETECTORS = ("hog", "cnn")
COMPRESSIONS = ("lz4hc", "zstd", "gzip", "none")


def _one_of(option: str, value: Any, names: tuple[str, ...]) -> None:
    if value not in names:
        raise FlowprepError(f"{option} {value!r}: choose among {', '.join(names)}")


def _whole(value: Any) -> bool:
    """An int that is not a bool (True is 1 in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RoiConfig:
    """Face tracking and mouth crop."""

    size: int = 112  # side of the square mouth crop, pixels
    detector: str = "hog"  # "hog" or "cnn" (dlib's MMOD detector: slower, finds harder faces)
    cnn_fallback: bool = True  # when HOG finds no face in a clip, try the CNN detector
    upsample: int = 0  # dlib detector upsampling of the first try; one more is tried on a miss
    # Width of the face (jaw corner to jaw corner) in crop pixels: fixes the zoom of every crop,
    # so all clips share one scale. 140 px matches LRW's native face size in 256x256 frames.
    face_width: float = 140.0
    smooth_window: int = 5  # frames of the centred moving average over landmarks
    max_track_shift: float = 0.25  # re-detect when the face box moves more than this x its size
    max_track_scale: float = 0.2  # ... or changes its size by more than this fraction
    track_min_similarity: float = 0.7  # ... or its face patch correlates less than this with the last frame's

    def __post_init__(self) -> None:
        _one_of("--detector", self.detector, DETECTORS)
        if not _whole(self.size) or self.size < 2:
            raise FlowprepError(f"roi size {self.size!r}: give the crop side in pixels, at least 2")
        if not _whole(self.smooth_window) or self.smooth_window < 1:
            raise FlowprepError(f"roi smooth_window {self.smooth_window!r}: give a number of frames, at least 1")


@dataclass(frozen=True)
class FlowConfig:
    """Optical flow between consecutive crops, and how it is stored."""

    backend: str = "pwcnet"  # "pwcnet", "dis" or "farneback"
    ckpt: str | None = "things"  # pwcnet weights: "things", "sintel" or a local .ckpt path
    preset: str = "medium"  # dis preset: ultrafast | fast | medium
    device: str = "auto"  # "auto", "cpu" or "cuda" (runtime only)
    batch_pairs: int = 512  # pairs per PWC-Net forward pass (runtime only)
    dtype: str = "int8"  # stored flow type: int8 | int16 | float16
    # PWC-Net arithmetic: fp32 | bf16 | fp16 (autocast; fp16 on CUDA only). Changes the flow's values
    # (reported by tests/flow/test_pwcnet_fast.py), so it is part of the fingerprint when not fp32.
    precision: str = "fp32"
    scale: float = 0.1  # pixels per stored unit (ignored for float16)

    def __post_init__(self) -> None:
        _one_of("--flow", self.backend, FLOW_BACKENDS)
        _one_of("--dis-preset", self.preset, DIS_PRESETS)
        _one_of("--flow-dtype", self.dtype, FLOW_DTYPES)
        _one_of("--flow-precision", self.precision, FLOW_PRECISIONS)
        if self.device not in FLOW_DEVICES and not str(self.device).startswith("cuda:"):
            raise FlowprepError(f"--device {self.device!r}: choose among {', '.join(FLOW_DEVICES)} (or cuda:N)")
        if self.precision != "fp32" and self.backend != "pwcnet":
            raise FlowprepError(f"--flow-precision {self.precision} applies to --flow pwcnet only")
        if not _whole(self.batch_pairs) or self.batch_pairs < 1:
            raise FlowprepError(f"--batch-pairs {self.batch_pairs!r}: give a number of frame pairs, at least 1")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not self.scale > 0:
            raise FlowprepError(f"--flow-scale {self.scale!r}: give the pixels per stored unit, more than 0")


@dataclass(frozen=True)
class BuildConfig:
    """Everything `flowprep build` needs besides the source and output folders."""

    layout: str = "auto"  # auto | lrw | grid | folder
    roi: RoiConfig = field(default_factory=RoiConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    shard_size: int = 256  # clips per shard file
    compression: str = "lz4hc"  # lz4hc | zstd (both through hdf5plugin) | gzip | none
    compression_level: int = 3
    # Store each clip's audio (16 kHz mono int16 on the video's clock, see flowprep.decode.decode_audio);
    # a clip without an audio stream then becomes a failure (stage "audio").
    audio: bool = False
    audio_rate: int = 16000  # samples per second of the stored audio
    workers: int | None = None  # CPU workers; None = every CPU of the cluster (runtime only)
    ray_address: str | None = None  # None = embedded local cluster (runtime only)
    limit: int | None = None  # only the first N clips (runtime only)
    stall_timeout: float = 1800.0  # give up when no clip finishes for this long (runtime only)
    # A clip with fewer frames is a failure (stage "decode"): 2 is the least that gives one flow pair.
    min_frames: int = 2
    # Build only these classes (LRW words, folder classes) / splits; labels still index every class
    # of the source tree, so a partial build stays compatible with a full one. None: all of them.
    words: tuple[str, ...] | None = None
    splits: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _whole(self.shard_size) or self.shard_size < 1:
            raise FlowprepError("--shard-size must be at least 1")
        if self.workers is not None and (not _whole(self.workers) or self.workers < 1):
            raise FlowprepError("--workers must be at least 1")
        _one_of("--compression", self.compression, COMPRESSIONS)
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 1):
            raise FlowprepError(f"--limit {self.limit}: give a number of clips, at least 1 (or leave it out for all)")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or self.min_frames < 2:
            raise FlowprepError(f"--min-frames {self.min_frames}: a clip needs at least 2 frames (one flow pair)")
        for name in ("words", "splits"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str):
                value = tuple(v.strip() for v in value.split(","))
            value = tuple(dict.fromkeys(str(v).strip() for v in value))
            if not value or any(not v for v in value):
                raise FlowprepError(f"--{name}: give at least one name, comma-separated and none empty")
            object.__setattr__(self, name, value)
        bad = [s for s in self.splits or () if s not in SPLIT_NAMES]
        if bad:
            raise FlowprepError(f"--splits: {', '.join(bad)} is not a split; choose among {', '.join(SPLIT_NAMES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BuildConfig":
        data = dict(data)
        roi = RoiConfig(**data.pop("roi", {}))
        flow = FlowConfig(**data.pop("flow", {}))
        return cls(roi=roi, flow=flow, **data)

    def replace(self, **changes: Any) -> "BuildConfig":
        return dataclasses.replace(self, **changes)

    def output_dict(self) -> dict[str, Any]:
        """The fields that decide shard contents."""

        def strip(d: dict[str, Any]) -> dict[str, Any]:
            return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in RUNTIME_FIELDS}

        out = strip(self.to_dict())
        for key, default in LATER_DEFAULTS.items():
            if out.get(key) == default:
                out.pop(key, None)
            elif isinstance(out.get(key), tuple):
                out[key] = list(out[key])
        if not self.audio:  # no audio in the shards: the fingerprint of builds from before the option stays
            for key in AUDIO_FIELDS:
                out.pop(key, None)
        if self.flow.precision == "fp32":  # likewise for builds from before --flow-precision
            out["flow"].pop("precision", None)
        return out

    def fingerprint(self) -> str:
        blob = json.dumps(self.output_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
