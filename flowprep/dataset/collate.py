"""Batching clips: stack equal lengths (LRW), pad unequal ones (GRID, folders) and say how long each is."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import default_collate

from ..shards.schema import own_length_keys, time_major_keys


def pad_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples of any length: time-major tensors are zero-padded to the longest clip, and
    ``lengths`` holds each clip's frame count (flow has one frame fewer per clip). ``audio`` (samples)
    is zero-padded to the longest clip's audio, with ``audio_lengths``. Which keys are which comes
    from the shard schema (flowprep.shards.schema): frame and pair streams, and the per-frame keys
    that reading and transforms add, run along the frames; per-sample streams have their own axis."""
    lengths = torch.tensor([len(s["gray"] if "gray" in s else s["boundary"]) for s in batch])
    own = {}
    for key, length_key in own_length_keys().items():
        if key in batch[0] and isinstance(batch[0][key], torch.Tensor):
            values = [s[key] for s in batch]
            own[key] = _pad(values)
            own[length_key] = torch.tensor([len(v) for v in values])
            batch = [{k: v for k, v in s.items() if k != key} for s in batch]
    if "words" in batch[0]:  # word timings: a list per clip, of any length, kept as lists
        own["words"] = [s["words"] for s in batch]
        batch = [{k: v for k, v in s.items() if k != "words"} for s in batch]
    if bool((lengths == lengths[0]).all()):  # the fixed-length path: plain stacking
        out = default_collate(batch)
        out["lengths"] = lengths
        out.update(own)
        return out
    out: dict[str, Any] = {"lengths": lengths}
    time_major = time_major_keys()
    for key in batch[0]:
        values = [s[key] for s in batch]
        if key in time_major and isinstance(values[0], torch.Tensor):
            out[key] = _pad(values)
        else:
            out[key] = default_collate(values)
    out.update(own)
    return out


def _pad(values: list[torch.Tensor]) -> torch.Tensor:
    longest = max(v.shape[0] for v in values)
    padded = values[0].new_zeros((len(values), longest) + tuple(values[0].shape[1:]))
    for i, v in enumerate(values):
        padded[i, : v.shape[0]] = v
    return padded


def flow_to_pixels(batch: dict[str, Any]) -> torch.Tensor:
    """Float32 flow in pixels from a sample or batch whose flow is the shard's stored integers
    (``flow_dtype="stored"``: pixels = stored x ``flow_scale``, one scale per clip) or already pixels
    (``flow_scale`` 1). Run it on the GPU, after the transfer: integers are 4x fewer bytes to move.
    Flow that ``Normalize`` already turned into units of its std has no ``flow_scale``: refused."""
    if "flow_scale" not in batch:
        raise ValueError("this flow has no flow_scale, so it is not pixels or stored integers: Normalize already "
                         "divided it by the flow std; call flow_to_pixels before Normalize, or leave Normalize out")
    flow = batch["flow"]
    scale = torch.as_tensor(batch["flow_scale"], dtype=torch.float32, device=flow.device)
    return flow.float() * scale.reshape(-1, *([1] * (flow.dim() - 1)))
