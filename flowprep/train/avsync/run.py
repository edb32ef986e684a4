"""Training and scoring the sync detector, in a run folder like every flowprep training run.

``train_avsync`` writes what ``flowprep train`` writes: ``last.pt`` (through train/checkpoint.py, read
back with ``weights_only=True``; it records ``"task": "avsync"``, so ``flowprep eval --run`` knows the
run without being told), ``config.json``, ``metrics.csv``, ``steps.csv`` and ``tb/`` (train/runlog.py).
``resume=True`` continues from ``last.pt`` after its epoch, with the optimiser, schedule and random
state it saved; ``amp=True`` runs in reduced precision on CUDA (flowprep.runtime).

Measured figures (AUC, EER on held-out GRID speakers, seconds per fold) are printed by the test
``tests/train/test_avsync.py::test_avsync_learns_sync_on_grid_and_generalises_to_held_out_speakers``
(its assertion message carries them); they are not kept here, where they would go stale.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ...errors import FlowprepError
from ...runtime import amp_dtype, autocast, grad_scaler, resolve_device
from .. import checkpoint
from ..runlog import RunLog
from .clips import AVClip, clips_from_shards, clips_from_videos
from .metrics import equal_error_rate, roc_auc
from .net import AVSyncNet, batch_pairs, contrastive_loss, select_hard_pairs
from .pairs import AVSyncPairs

TASK = "avsync"
EPOCH_FIELDS = ["epoch", "step", "lr", "train_loss", "pairs_per_step", "epoch_s"]
# what a resumed run may change: where and how it runs (not epochs: the one-cycle schedule spans them all)
RUNTIME_FIELDS = frozenset({"device", "workers", "amp"})


@dataclass
class AVSyncConfig:
    window: int = 9  # video frames per window (0.36 s at 25 fps)
    frame_size: tuple[int, int] = (60, 100)  # mouth crop (H, W) the clips are resized to
    shift_s: float = 0.5  # impostor audio offset
    n_mels: int = 40
    per_frame: int = 4  # mel frames per video frame (a 10 ms hop at 25 fps)
    with_deltas: bool = True  # static + delta + delta-delta planes (the paper's MFEC cube)
    video_norm: str = "motion"  # motion: pixels minus their mean over the window (appearance removed) | window
    channels: int = 16  # first conv width of each network (x2, x4 deeper)
    embed: int = 64
    steps: int = 3  # time positions kept before the fully connected layer
    dropout: float = 0.1
    margin: float = 1.0
    hard_k: int | None = None  # online hard-pair selection: keep the k hardest genuine + k hardest impostors
    batch_negatives: bool = False  # also every video with the other windows' audio in the batch (not near in time)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    stride: int = 1  # frames between training windows
    reverse: bool = False  # augmentation: play half the training windows (video and audio) backwards
    train_pairs: str = "random"  # random: each window once, genuine or impostor | both: each window both ways
    time_range: tuple[float, float] | None = None  # training windows only inside this span of each clip
    seed: int = 0
    device: str = "cpu"  # auto | cpu | cuda | cuda:N
    workers: int = 0
    amp: bool = False  # mixed precision on CUDA (flowprep.runtime.amp_dtype)

    def __post_init__(self) -> None:
        self.frame_size = tuple(self.frame_size)
        self.time_range = None if self.time_range is None else tuple(self.time_range)
        problems = [f"{k} must be at least 1" for k in ("window", "per_frame", "n_mels", "channels", "embed", "steps",
                                                          "epochs", "batch_size", "stride") if getattr(self, k) < 1]
        if self.video_norm not in ("motion", "window"):
            problems.append(f"video_norm {self.video_norm!r} (use motion or window)")
        if self.train_pairs not in ("random", "both"):
            problems.append(f"train_pairs {self.train_pairs!r} (use random or both)")
        if not self.shift_s > 0 or not self.lr > 0:
            problems.append("shift_s and lr must be positive")
        if self.hard_k is not None and self.hard_k < 1:
            problems.append("hard_k must be at least 1 (or None for every pair)")
        if problems:
            raise FlowprepError("bad avsync settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AVSyncConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def differences(self, other: "AVSyncConfig") -> list[str]:
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]]


def build_avsync_model(cfg: AVSyncConfig) -> AVSyncNet:
    return AVSyncNet(cfg.channels, cfg.embed, 3 if cfg.with_deltas else 1, cfg.steps, cfg.dropout)


def _resolve_clips(clips, shards, split, cfg: AVSyncConfig) -> list[AVClip]:
    if clips is None:
        if shards is None:
            raise FlowprepError("give clips (AVClip list or video paths) or a shard folder")
        return clips_from_shards(shards, split, cfg.frame_size)
    clips = list(clips)
    if clips and not isinstance(clips[0], AVClip):
        return clips_from_videos(clips, cfg.frame_size)
    import cv2

    out = []
    for c in clips:  # resize to the model's frame size where needed
        if c.frames.shape[1:] != tuple(cfg.frame_size):
            frames = np.stack([cv2.resize(f, cfg.frame_size[::-1], interpolation=cv2.INTER_AREA) for f in c.frames])
            c = dataclasses.replace(c, frames=frames)
        out.append(c)
    return out


def _pairs(clips, cfg: AVSyncConfig, mode: str, time_range=None, stride: int = 1, train: bool = False) -> AVSyncPairs:
    return AVSyncPairs(clips, cfg.window, cfg.shift_s, mode, stride, time_range, cfg.n_mels, cfg.per_frame,
                       cfg.with_deltas, cfg.seed, cfg.video_norm, augment=train, reverse=cfg.reverse)


def train_avsync(clips: Sequence[AVClip | str | Path] | None = None, shards: str | Path | None = None,
                 config: AVSyncConfig | None = None, out: str | Path | None = None, split: str = "train",
                 progress: bool = False, resume: bool = False,
                 on_epoch_end: Callable[[dict[str, Any]], None] | None = None, **changes: Any) -> dict[str, Any]:
    """Train the coupled networks on ``clips`` (AVClip objects or video paths) or ``shards``/``split``.

    ``changes`` override fields of ``config``. With ``out``, the run folder (see the module's text);
    ``resume`` continues the run there. ``on_epoch_end(row)`` is called after each epoch's checkpoint.
    Returns {"model", "config", "losses" (per step of this call),
    "pairs_per_step", "seconds", "windows", "epoch", "resumed_from_step"}."""
    cfg = dataclasses.replace(config or AVSyncConfig(), **changes)
    out = None if out is None else Path(out)
    last = None if out is None else out / checkpoint.LAST
    if last is not None and last.is_file() and not resume:
        raise FlowprepError(f"{out} already holds a run ({last.name}); pass --resume to continue it, "
                            "or choose another --out")
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    precision = amp_dtype(cfg.amp, device)
    data = _pairs(_resolve_clips(clips, shards, split, cfg), cfg, cfg.train_pairs, cfg.time_range, cfg.stride,
                  train=True)
    model = build_avsync_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    scaler = grad_scaler(device, precision)
    start_epoch = step = 0
    if last is not None and last.is_file():
        state = checkpoint.load(last)
        if state.get("task") != TASK:
            raise FlowprepError(f"{out} holds a {state.get('task', 'lipread')} run, not an avsync one: "
                                "choose another --out")
        changed = AVSyncConfig.from_dict(state["config"]).differences(cfg)
        if changed:
            raise FlowprepError(f"cannot resume {out}: settings changed ({'; '.join(changed)}). "
                                "Resume with the run's settings or start a new --out.")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
    resumed_from = step
    log = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"task": TASK, **cfg.to_dict()}, indent=1) + "\n")
        log = RunLog(out, step, start_epoch, EPOCH_FIELDS)
    losses, used = [], []
    t0 = time.perf_counter()
    model.train()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t_epoch = time.perf_counter()
            data.set_epoch(epoch)
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            first = len(losses)
            for batch in DataLoader(data, cfg.batch_size, shuffle=True, generator=gen, num_workers=cfg.workers):
                video, audio = batch["video"].to(device), batch["audio"].to(device)
                label = batch["label"].to(device)
                with autocast(device, precision):
                    distance, label = batch_pairs(model, video, audio, label, batch if cfg.batch_negatives else None,
                                                  data, cfg.shift_s / 2)
                distance = distance.float()
                keep = select_hard_pairs(distance, label, cfg.hard_k)
                loss = contrastive_loss(distance[keep], label[keep], cfg.margin, balanced=cfg.batch_negatives)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                lr = opt.param_groups[0]["lr"]
                sched.step()
                step += 1
                losses.append(loss.item())
                used.append(len(keep))
                if log is not None:
                    log.step(step, epoch + 1, losses[-1], lr)
            row = {"epoch": epoch + 1, "step": step, "lr": lr, "train_loss": float(np.mean(losses[first:])),
                   "pairs_per_step": float(np.mean(used[first:])), "epoch_s": time.perf_counter() - t_epoch}
            if progress:
                print(f"avsync epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f}")
            if out is not None:
                checkpoint.save(last, {"task": TASK, "config": cfg.to_dict(), "model": model.state_dict(),
                                       "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                       "scaler": scaler.state_dict(), "rng": checkpoint.rng_state(),
                                       "epoch": epoch + 1, "step": step, "split": split,
                                       "shards": None if shards is None else str(shards)})
                log.epoch(row)
            if on_epoch_end is not None:
                on_epoch_end(row)
    finally:
        if log is not None:
            log.close()
    return {"model": model, "config": cfg, "losses": losses, "pairs_per_step": used,
            "seconds": time.perf_counter() - t0, "windows": len(data.windows), "epoch": max(start_epoch, cfg.epochs),
            "resumed_from_step": resumed_from}


def _checkpoint(run: str | Path) -> dict[str, Any]:
    path = Path(run)
    state = checkpoint.load(path / checkpoint.LAST if path.is_dir() else path)
    if state.get("task") != TASK:
        raise FlowprepError(f"{run} is not an avsync run (its task: {state.get('task', 'lipread')})")
    return state


def load_avsync(run: str | Path, device: str = "cpu") -> tuple[AVSyncNet, AVSyncConfig]:
    """The model and settings of a run folder (or its last.pt), read with weights_only=True."""
    state = _checkpoint(run)
    cfg = AVSyncConfig.from_dict(state["config"])
    model = build_avsync_model(cfg)
    model.load_state_dict(state["model"])
    return model.to(resolve_device(device)), cfg


def trained_on(run: str | Path) -> str | None:
    """The shard folder a saved avsync run was trained on (None when it was trained on clips)."""
    return _checkpoint(run).get("shards")


@torch.no_grad()
def pair_distances(model: AVSyncNet, pairs: AVSyncPairs, batch_size: int = 64,
                   device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(distances, labels) of every pair in ``pairs``, in eval mode."""
    was_training = model.training
    model.eval()
    dists, labels = [], []
    for batch in DataLoader(pairs, batch_size, shuffle=False):
        dists.append(model(batch["video"].to(device), batch["audio"].to(device)).float().cpu())
        labels.append(batch["label"])
    model.train(was_training)
    return torch.cat(dists).numpy(), torch.cat(labels).numpy().astype(int)


def evaluate_avsync(model: AVSyncNet | str | Path, clips: Sequence[AVClip | str | Path] | None = None,
                    shards: str | Path | None = None, split: str = "test", config: AVSyncConfig | None = None,
                    time_range: tuple[float, float] | None = None, stride: int = 1, device: str = "cpu",
                    out: str | Path | None = None, return_scores: bool = False) -> dict[str, Any]:
    """EER and AUC of a model (or a run folder / its last.pt) on every window of the clips (default: the
    shards the run was trained on), each once in sync and once with the audio shifted (balanced).
    Score = -distance. ``paired_accuracy``: the share of windows whose in-sync audio lies closer than
    their shifted audio (a two-way choice, as in picking the right offset; chance 0.5). With ``out`` (or
    a run folder given as ``model``), writes avsync-eval-<split>.json there. ``return_scores``: the
    result also holds "distances" and "labels" (numpy, pairs in (genuine, impostor) order per window), to
    pool several evaluations (e.g. cross-validation folds) before computing AUC and EER."""
    dev = resolve_device(device)
    if not isinstance(model, nn.Module):
        run = Path(model)
        if clips is None and shards is None:
            shards = trained_on(run)
        model, loaded = load_avsync(run, str(dev))
        config = config or loaded
        out = out or (run if run.is_dir() else run.parent)
    cfg = config or AVSyncConfig()
    pairs = _pairs(_resolve_clips(clips, shards, split, cfg), cfg, "both", time_range, stride)
    distance, label = pair_distances(model.to(dev), pairs, device=dev)
    eer, threshold = equal_error_rate(-distance, label)
    # pairs come as (genuine, impostor) of the same video window: how often the genuine audio is closer
    paired = float(np.mean(distance[0::2] < distance[1::2]))
    result = {"auc": roc_auc(-distance, label), "eer": eer, "threshold_distance": -threshold,
              "paired_accuracy": paired, "pairs": int(len(label)),
              "genuine_mean_distance": float(distance[label == 1].mean()),
              "impostor_mean_distance": float(distance[label == 0].mean()), "shift_s": cfg.shift_s}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"avsync-eval-{split}.json").write_text(json.dumps(result, indent=1) + "\n")
    if return_scores:
        result.update(distances=distance, labels=label)
    return result
