"""From shards to model inputs: loaders with the two-stream transforms, then normalisation on the device.

Workers crop and flip only; gray travels as uint8 and flow as the shard's stored integers
(``flow_dtype="stored"``), 4x fewer bytes than floats. Pixels become normalised floats after the
transfer: ``flow_to_pixels`` then ``Normalize`` with the manifest's statistics.

Every random choice of an epoch (order, crops, flips) comes from the run's seed, the epoch number
and (for crops and flips) the clip's index, so a resumed run reads exactly what an uninterrupted one
would have, and N ranks read what one process would (see distributed.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..dataset import ShardDataset, flow_to_pixels, pad_collate
from ..errors import FlowprepError
from ..transforms import MOUTH_POINTS, CenterCrop, Compose, Normalize, RandomCrop, RandomHorizontalFlip, keypoint_heatmaps
from .config import TrainConfig
from .distributed import PlanSampler
from .backends import time_mask


def train_transform(cfg: TrainConfig) -> Compose:
    steps = [RandomCrop(cfg.crop, seed=cfg.seed)]
    if cfg.flip:
        steps.append(RandomHorizontalFlip(seed=cfg.seed + 1))
    return Compose(steps)


class EpochView(Dataset):
    """A split whose augmentation of clip i in epoch e is drawn from (seed, e, i) alone, whichever
    worker or rank reads it: two ranks of B/2 clips then crop and flip as one process of B does.
    Samples carry their ``index`` in the split (evaluation gathers by it)."""

    def __init__(self, base: ShardDataset, transform: Compose, seed: int, random: bool):
        self.base, self.transform, self.seed, self.random = base, transform, seed, random
        self.epoch = 0

    @property
    def manifest(self):
        return self.base.manifest

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.random:
            steps = self.transform.transforms
            seeds = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(len(steps))
            for t, seed in zip(steps, seeds):
                if hasattr(t, "reseed"):
                    t.reseed(int(seed))
        sample = self.transform(self.base[index])
        sample["index"] = int(index)
        return sample


def read_streams(streams: tuple[str, ...]) -> tuple[str, ...]:
    """What to read for the model's streams: heatmaps are drawn from landmarks on the device, on the
    grid of the gray crops (read along, for their size), after crop and flip moved the landmarks."""
    if "heatmap" not in streams:
        return streams
    return tuple(dict.fromkeys([s for s in streams if s != "heatmap"] + ["gray", "landmarks"]))


SENTENCE_LAYOUTS = frozenset({"lrs"})


def require_word_level(shards) -> None:
    """The trainer classifies words (LRW semantics); sentence-level folders are refused with what to use instead."""
    from ..shards.manifest import Manifest

    layout = Manifest.load(shards).layout
    if layout in SENTENCE_LAYOUTS:
        raise FlowprepError(f"{shards} holds sentence-level clips ({layout}: LRS2/LRS3) and `flowprep train` trains "
                            "word classifiers; read them in a sentence-level model through flowprep.ShardDataset "
                            "(each sample has 'text' and 'words')")


def dataset(cfg: TrainConfig, split: str, train: bool) -> EpochView:
    base = ShardDataset(cfg.shards, split, streams=read_streams(cfg.streams), flow_dtype="stored")
    return EpochView(base, train_transform(cfg) if train else Compose([CenterCrop(cfg.crop)]), cfg.seed, train)


def loader(ds: EpochView, cfg: TrainConfig, batches: list[list[int]], epoch: int = 0,
           device: torch.device | None = None) -> DataLoader:
    """A loader over given batches of indices (distributed.train_plan or eval_indices cut into batches)."""
    ds.epoch = epoch
    return DataLoader(ds, batch_sampler=PlanSampler(batches), num_workers=cfg.workers, collate_fn=pad_collate,
                      pin_memory=device is not None and device.type == "cuda", persistent_workers=False)


def eval_batches(indices: range | list[int], batch_size: int) -> list[list[int]]:
    indices = list(indices)
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


def normalizer(cfg: TrainConfig, ds: ShardDataset) -> Normalize:
    """Normalisation from the training split's statistics (used for every split)."""
    return Normalize.from_manifest(ds.manifest.stats(cfg.train_split))


def model_inputs(batch: dict[str, Any], streams: tuple[str, ...], normalize: Normalize,
                 device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({stream: [B, C, T, H, W] float}, lengths [B] on the device).

    Flow has one frame fewer than gray; a zero frame in front (no motion known before the first
    frame) puts flow[t] = motion from frame t-1 to t next to frame t, for every stream and fusion."""
    moved = {k: batch[k].to(device, non_blocking=True) for k in ("gray", "flow", "flow_scale") if k in batch}
    if "flow" in moved:
        moved["flow"] = flow_to_pixels(moved)
        moved["flow_scale"] = 1.0
    moved = normalize(moved)
    lengths = batch["lengths"].to(device)
    inputs = {}
    if "gray" in streams:
        inputs["gray"] = moved["gray"].unsqueeze(1)  # [B, 1, T, H, W]
    if "flow" in streams:
        flow = moved["flow"].permute(0, 2, 1, 3, 4)  # [B, 2, T-1, H, W]
        inputs["flow"] = torch.nn.functional.pad(flow, (0, 0, 0, 0, 1, 0))
    if "heatmap" in streams:
        mouth = batch["landmarks"][..., list(MOUTH_POINTS), :].to(device, non_blocking=True)
        heat = keypoint_heatmaps(mouth, tuple(batch["gray"].shape[-2:]))  # [B, T, 20, H, W]
        inputs["heatmap"] = heat.permute(0, 2, 1, 3, 4)
    # Padding frames of short clips are zero after normalisation, like a convolution's own padding
    # in time: a clip's features do not depend on the clips it is batched with (in eval mode).
    for name, x in inputs.items():
        inputs[name] = x * time_mask(lengths, x.shape[2]).to(x.dtype)[:, None, :, None, None]
    return inputs, lengths


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
