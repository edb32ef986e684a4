"""Read throughput of a shard folder: random access, in one process and through a DataLoader."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..transforms import Compose, Normalize
from .collate import pad_collate
from .shard_dataset import ShardDataset


def train_transform(root: str | Path, split: str, seed: int = 0) -> Compose:
    """What training applies (train.data.train_transform at the trainer's default crop and flip), then
    the normalisation the trainer runs on the device."""
    from ..train.config import TrainConfig
    from ..train.data import train_transform as augment

    stats = ShardDataset(root, split).manifest.stats(split)
    return Compose(augment(TrainConfig(shards=str(root), out="", seed=seed)).transforms + [Normalize.from_manifest(stats)])


def read_bench(root: str | Path, split: str = "train", clips: int = 400, workers: int = 2, batch_size: int = 32,
               seed: int = 0) -> dict:
    """clips/s for random reads: one process and a DataLoader, each with and without transforms,
    plus where one read's time goes."""
    ds = ShardDataset(root, split)
    n = clips
    rng = np.random.default_rng(seed)
    # random access; a folder smaller than ``clips`` is read several times over, in random order
    order = np.concatenate([rng.permutation(len(ds)) for _ in range(-(-n // len(ds)))])[:n].tolist()
    figures: dict = {"clips_in_split": len(ds), "clips_read": n, "workers": workers}
    for label, transform in (("plain", None), ("transforms", train_transform(root, split, seed))):
        single = ShardDataset(root, split, transform=transform)
        single[order[0]]  # open the first handle outside the timing
        t0 = time.perf_counter()
        for i in order:
            single[i]
        figures[f"single_{label}_clips_per_s"] = round(n / (time.perf_counter() - t0), 1)
        loader = DataLoader(ShardDataset(root, split, transform=transform), batch_size=batch_size,
                            sampler=order, num_workers=workers, collate_fn=pad_collate, persistent_workers=False)
        t0 = time.perf_counter()
        seen = sum(len(batch["clip_id"]) for batch in loader)
        figures[f"loader_{label}_clips_per_s"] = round(seen / (time.perf_counter() - t0), 1)
    figures["per_clip_ms"] = _breakdown(ds, order[: min(100, n)])
    return figures


def _breakdown(ds: ShardDataset, order: list[int]) -> dict:
    """Mean milliseconds per clip for each part of a read."""
    parts = {"gray_read": 0.0, "flow_read": 0.0, "flow_to_float": 0.0, "to_torch": 0.0}
    shard = None
    for i in order:
        k = int(np.searchsorted(ds._starts, i, side="right") - 1)
        shard = ds._open(ds.shards[k].name)
        j = i - ds._starts[k]
        a, b = int(shard.offset[j]), int(shard.offset[j + 1])
        fa, fb = int(shard.flow_offset[j]), int(shard.flow_offset[j + 1])
        t0 = time.perf_counter()
        gray = shard.h5["gray"][a:b]
        t1 = time.perf_counter()
        raw = shard.h5["flow"][fa:fb]
        t2 = time.perf_counter()
        flow = raw.astype(np.float32) * np.float32(shard.flow_scale)
        t3 = time.perf_counter()
        torch.from_numpy(gray), torch.from_numpy(flow)
        t4 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[key] += dt
    return {k: round(1000 * v / max(1, len(order)), 3) for k, v in parts.items()}

