"""One training run's settings. Saved with every checkpoint; `--resume` refuses settings that changed.

No torch here: the command line reads its defaults without loading it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from ..errors import FlowprepError
from .registry import BACKENDS, FRONTENDS, FUSIONS, MAP_FUSIONS, STREAM_CHANNELS

# Fields a resumed run may change: where and how fast it runs, and how long it goes on.
RUNTIME_FIELDS = frozenset({"shards", "out", "epochs", "device", "workers", "progress", "resume"})
# ... and, for data-parallel runs, how the ranks cooperate (a run resumes on any number of ranks).
RUNTIME_FIELDS |= {"sync_bn", "dist_timeout_s"}
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")

# The choices are declared in registry.py (torch-free; the networks register their builders there).
__all__ = ["BACKENDS", "FRONTENDS", "FUSIONS", "MAP_FUSIONS", "STREAM_CHANNELS", "TrainConfig"]


@dataclass
class TrainConfig:
    shards: str  # a shard folder written by `flowprep build`
    out: str  # the run folder: checkpoints, metrics.csv, steps.csv, tb/
    # model
    frontend: str = "r3d18"  # one of FRONTENDS
    backend: str = "bilstm"  # one of BACKENDS
    streams: tuple[str, ...] = ("gray", "flow")
    fusion: str = "features"  # two streams: one of FUSIONS
    fusion_stage: int = -1  # front-end stage whose feature maps a map fusion combines (-1: the last)
    lateral: bool = False  # bidirectional lateral connections between the two streams' front-ends
    width: float = 1.0  # front-end channel multiplier (1.0: 64..512 for r3d18, 1024 out for i3d)
    hidden: int = 512  # LSTM units per direction, or TCN channels
    layers: int | None = None  # back-end depth; None = 2 LSTM layers or 4 TCN blocks
    dropout: float = 0.2
    pretrained: str | None = None  # 2D ImageNet state_dict (.pth) to inflate: torchvision resnet18 (r3d18) or googlenet (i3d)
    # Kinetics video weights (pretrained.py): torchvision r3d_18 (r3d18), or the PyTorch I3D port's rgb/flow
    # checkpoints (i3d); several files comma-separated, each stream takes the one that fits it
    pretrained_video: str | None = None
    # optimisation
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero over the remaining steps
    label_smoothing: float = 0.0
    grad_clip: float = 5.0  # max gradient norm; 0 = off
    amp: bool = False  # mixed precision on CUDA (bfloat16 where supported, else float16 with loss scaling)
    # data
    crop: int = 104  # random crop for training, centre crop for evaluation
    flip: bool = True  # random horizontal flip (mirrors both streams, negates flow dx)
    train_split: str = "train"
    val_split: str | None = "val"  # evaluated after every epoch when the folder has it
    max_steps_per_epoch: int | None = None  # a quick trial on part of the data
    # runtime
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = 2  # DataLoader worker processes
    seed: int = 0
    progress: bool = True
    resume: bool = False
    # data parallel (torchrun / Ray Train; see distributed.py): batch_size stays the global batch
    sync_bn: bool = False  # BatchNorm statistics over the global batch (SyncBatchNorm); else each rank's own
    dist_timeout_s: float = 600.0  # how long a rank waits for the others (rendezvous, each collective)

    def __post_init__(self) -> None:
        self.streams = tuple(self.streams)
        self.shards, self.out = str(self.shards), str(self.out)
        problems = []
        if self.frontend not in FRONTENDS:
            problems.append(f"frontend {self.frontend!r} (use {' or '.join(FRONTENDS)})")
        if self.backend not in BACKENDS:
            problems.append(f"backend {self.backend!r} (use {' or '.join(BACKENDS)})")
        if not self.streams or len(set(self.streams)) != len(self.streams) or \
                any(s not in STREAM_CHANNELS for s in self.streams):
            problems.append(f"streams {','.join(self.streams) or '(none)'} (one or two of {', '.join(STREAM_CHANNELS)})")
        if self.fusion not in FUSIONS:
            problems.append(f"fusion {self.fusion!r} (use {', '.join(FUSIONS)})")
        if (self.fusion in MAP_FUSIONS or self.lateral) and len(self.streams) != 2:
            problems.append(f"fusion {self.fusion}{' with lateral' if self.lateral else ''} needs exactly two streams")
        for name in ("epochs", "batch_size", "crop", "hidden"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.layers is not None and self.layers < 1:
            problems.append("layers must be at least 1 (or None for the back-end's default)")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            problems.append("max_steps_per_epoch must be at least 1 (or None for every step)")
        for name in ("width", "lr"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive")
        for name in ("weight_decay", "warmup_epochs", "grad_clip"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be 0 or more")
        for name in ("dropout", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1)")
        if not _DEVICE.fullmatch(str(self.device)):
            problems.append(f"device {self.device!r} (use auto, cpu, cuda or cuda:N)")
        if self.dist_timeout_s <= 0:
            problems.append("dist_timeout_s must be positive")
        if self.workers < 0:
            problems.append("workers must be 0 or more")
        if self.pretrained and self.pretrained_video:
            problems.append("--pretrained and --pretrained-video: give one (Kinetics weights already start from ImageNet)")
        if problems:
            raise FlowprepError("bad training settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["streams"] = list(self.streams)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def differences(self, other: "TrainConfig") -> list[str]:
        """Settings other than runtime ones that differ: a resumed run must match on all of them."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]]
