"""Two-stream augmentation: every spatial change touches the crops and the flow the same way.

Samples are the dicts ShardDataset returns (torch tensors): ``gray`` (T,H,W), ``flow`` (T-1,2,H,W)
in pixels, optionally ``landmarks`` (T,68,2) in crop pixels and ``audio`` (S,). Random transforms draw
from their own generator, seeded at construction, so a seed fixes the whole augmentation sequence.

A keypoint stream (``KeypointHeatmaps``) is rendered from the landmarks *after* the spatial
augmentations, which move and mirror the landmarks with the crops; crop and flip refuse a sample
that already holds heatmaps, so the order cannot silently go wrong.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .dataset.collate import flow_to_pixels

# Mirror image of each of dlib's 68 points: a flipped face's left eye is its right eye.
MIRROR_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)


class Compose:
    def __init__(self, transforms: Sequence[Callable[[dict], dict]]):
        self.transforms = list(transforms)

    def __repr__(self) -> str:
        return f"Compose({', '.join(type(t).__name__ for t in self.transforms)})"

    def __call__(self, sample: dict) -> dict:
        for t in self.transforms:
            sample = t(sample)
        return sample


class _Random:
    def __init__(self, seed: int | None):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Give each DataLoader worker its own stream (call from worker_init_fn)."""
        self.rng = np.random.default_rng(seed)


def _spatial_size(sample: dict) -> tuple[int, int]:
    ref = sample["gray"] if "gray" in sample else sample["flow"]
    return int(ref.shape[-2]), int(ref.shape[-1])


def _no_heatmaps(sample: dict, what: str) -> None:
    if "heatmaps" in sample:
        raise ValueError(f"{what} after KeypointHeatmaps: render the heatmaps last, after the spatial "
                         f"augmentations (they move the landmarks the heatmaps are drawn from)")


def crop(sample: dict, top: int, left: int, size: int) -> dict:
    _no_heatmaps(sample, "crop")
    out = dict(sample)
    for key in ("gray", "flow"):
        if key in out:
            out[key] = out[key][..., top:top + size, left:left + size]
    if "landmarks" in out:
        out["landmarks"] = out["landmarks"] - torch.tensor([left, top], dtype=out["landmarks"].dtype)
    return out


class RandomCrop(_Random):
    """A ``size`` x ``size`` window at one random offset for the whole clip and both streams."""

    def __init__(self, size: int, seed: int | None = None):
        super().__init__(seed)
        self.size = size

    def __call__(self, sample: dict) -> dict:
        h, w = _spatial_size(sample)
        top = int(self.rng.integers(0, h - self.size + 1))
        left = int(self.rng.integers(0, w - self.size + 1))
        return crop(sample, top, left, self.size)


class CenterCrop:
    def __init__(self, size: int):
        self.size = size

    def __call__(self, sample: dict) -> dict:
        h, w = _spatial_size(sample)
        return crop(sample, (h - self.size) // 2, (w - self.size) // 2, self.size)


def hflip(sample: dict) -> dict:
    """Mirror left-right: crops and flow are flipped, flow dx changes sign, landmarks swap sides."""
    _no_heatmaps(sample, "hflip")
    out = dict(sample)
    if "gray" in out:
        out["gray"] = torch.flip(out["gray"], dims=[-1])
    if "flow" in out:
        flow = torch.flip(out["flow"], dims=[-1]).clone()
        flow[:, 0] = -flow[:, 0]
        out["flow"] = flow
    if "landmarks" in out:
        w = _spatial_size(sample)[1]
        lm = out["landmarks"][:, torch.from_numpy(MIRROR_68)].clone()
        lm[..., 0] = (w - 1) - lm[..., 0]
        out["landmarks"] = lm
    return out


class RandomHorizontalFlip(_Random):
    def __init__(self, p: float = 0.5, seed: int | None = None):
        super().__init__(seed)
        self.p = p

    def __call__(self, sample: dict) -> dict:
        return hflip(sample) if self.rng.random() < self.p else sample


class Normalize:
    """Model-ready floats: gray -> (gray/255 - mean) / std, flow -> pixels / flow_std, float32.

    Works on one sample (in DataLoader workers) or on a batch after the transfer to the device (the
    fast path: uint8 gray and the shard's stored integer flow cross processes and the bus, 4x fewer
    bytes than floats, and the floats are made where the model runs). Stored flow is dequantised with
    the sample's or batch's ``flow_scale`` (one number, or one per clip), as ``flow_to_pixels`` does.
    The result is no longer in pixels, so ``flow_scale`` is dropped from it and ``flow_to_pixels``
    (or a second ``Normalize``) refuses it instead of scaling it again. Statistics from the manifest.
    """

    def __init__(self, gray_mean: float, gray_std: float, flow_std: float = 1.0):
        self.gray_mean, self.gray_std, self.flow_std = gray_mean, gray_std, flow_std

    @classmethod
    def from_manifest(cls, stats: dict) -> "Normalize":
        return cls(stats["gray_mean"], stats["gray_std"], stats.get("flow_std", 1.0))

    def __repr__(self) -> str:
        return f"Normalize(gray_mean={self.gray_mean:.4g}, gray_std={self.gray_std:.4g}, flow_std={self.flow_std:.4g})"

    def __call__(self, sample: dict) -> dict:
        out = dict(sample)
        if "gray" in out:
            out["gray"] = (out["gray"].float() / 255.0 - self.gray_mean) / self.gray_std
        if "flow" in out:
            out["flow"] = flow_to_pixels(out) / self.flow_std
            del out["flow_scale"]
        return out


class TimeMask(_Random):
    """Zero up to ``max_frames`` consecutive frames (and the flow into and out of them)."""

    def __init__(self, max_frames: int = 5, p: float = 0.5, seed: int | None = None):
        super().__init__(seed)
        self.max_frames, self.p = max_frames, p

    def __call__(self, sample: dict) -> dict:
        if self.rng.random() >= self.p:
            return sample
        t = int((sample["gray"] if "gray" in sample else sample["flow"]).shape[0])
        width = int(self.rng.integers(1, self.max_frames + 1))
        start = int(self.rng.integers(0, max(1, t - width + 1)))
        out = dict(sample)
        if "gray" in out:
            out["gray"] = out["gray"].clone()
            out["gray"][start:start + width] = 0
        if "flow" in out:
            out["flow"] = out["flow"].clone()
            out["flow"][max(0, start - 1):start + width] = 0
        if "heatmaps" in out:
            out["heatmaps"] = out["heatmaps"].clone()
            out["heatmaps"][start:start + width] = 0
        return out


# ---- keypoint heatmaps ----------------------------------------------------------------------
MOUTH_POINTS = tuple(range(48, 68))  # dlib's 20 lip points: 12 outer, 8 inner
POINT_SETS = {"mouth": MOUTH_POINTS, "all": tuple(range(68))}


def keypoint_heatmaps(
    landmarks: torch.Tensor,
    frame_size: int | tuple[int, int],
    sigma: float = 2.0,
    out_size: int | tuple[int, int] | None = None,
    combine: str = "channels",
) -> torch.Tensor:
    """Gaussian heatmaps of points ``[..., K, 2]`` (x, y in pixels of a ``frame_size`` frame, pixel
    centres at integers) -> ``[..., K, h, w]`` float32, or ``[..., 1, h, w]`` when combined.

    Each point is ``exp(-d^2 / (2 sigma^2))``, 1 at the point itself; ``sigma`` is in frame pixels.
    ``out_size`` renders at another resolution (56: 4x fewer values), scaling points and sigma.
    ``combine``: "channels" (one channel per point), "max" (one channel, the brightest point at each
    pixel: every peak stays 1 and exactly at its point) or "sum" (one channel; neighbouring lip points
    a few pixels apart add up, so peaks grow and drift between points). Points that are not finite
    give an empty channel. Works on batches and on the GPU.
    """
    fh, fw = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
    oh, ow = (fh, fw) if out_size is None else ((out_size, out_size) if isinstance(out_size, int) else out_size)
    pts = torch.as_tensor(landmarks).to(torch.float32)
    sx, sy = ow / fw, oh / fh
    x = (pts[..., 0] + 0.5) * sx - 0.5
    y = (pts[..., 1] + 0.5) * sy - 0.5
    valid = torch.isfinite(x) & torch.isfinite(y)
    x, y = torch.where(valid, x, 0.0), torch.where(valid, y, 0.0)
    gx = torch.exp(-(torch.arange(ow, device=pts.device) - x[..., None]).square() / (2 * (sigma * sx) ** 2))
    gy = torch.exp(-(torch.arange(oh, device=pts.device) - y[..., None]).square() / (2 * (sigma * sy) ** 2))
    gy = gy * valid[..., None]
    heat = gy[..., :, None] * gx[..., None, :]  # separable: [..., K, h, w]
    if combine == "channels":
        return heat
    if combine == "max":
        return heat.amax(dim=-3, keepdim=True)
    if combine == "sum":
        return heat.sum(dim=-3, keepdim=True)
    raise ValueError(f"combine {combine!r}: use channels, max or sum")


class KeypointHeatmaps:
    """Add ``sample["heatmaps"]``: the landmarks as Gaussian heatmaps, (T, K, h, w) float32, a keypoint
    stream for two-stream (RGB + keypoints) models.

    Put it after RandomCrop / CenterCrop / RandomHorizontalFlip: they move and mirror ``landmarks``
    (a flip also swaps left and right points, so channel k stays dlib point k), and the heatmaps are
    drawn where the landmarks then are, on the grid of the cropped frames.

    - ``points``: "mouth" (dlib points 48-67, 20 channels; default: the 112x112 mouth crop shows the
      lips, while eyes and brows fall outside it), "all" (68), or a sequence of point indices.
    - ``combine``: "channels" (default: one channel per point, as two-stream keypoint encoders take
      them), or one channel: "max" (peaks stay 1 at each point) or "sum".
    - ``sigma`` in pixels of the crop (default 2: lip points lie 3-10 px apart in a 112 crop);
      ``out_size`` renders at a lower resolution (e.g. 56).

    A clip of 29 frames at 112x112 with 20 channels is 29 MB of float32: in DataLoader workers prefer
    ``out_size``, ``dtype=torch.float16`` or ``combine="max"``, or render on the GPU after batching with
    ``keypoint_heatmaps(batch["landmarks"][..., idx, :].cuda(), frame_size)``.
    """

    def __init__(
        self,
        sigma: float = 2.0,
        points: str | Sequence[int] = "mouth",
        combine: str = "channels",
        out_size: int | None = None,
        dtype: torch.dtype = torch.float32,
        frame_size: int | None = None,
    ):
        if combine not in ("channels", "max", "sum"):
            raise ValueError(f"combine {combine!r}: use channels, max or sum")
        if isinstance(points, str):
            if points not in POINT_SETS:
                raise ValueError(f"points {points!r}: use mouth, all or a list of indices")
            points = POINT_SETS[points]
        self.points = torch.as_tensor(list(points), dtype=torch.long)
        if len(self.points) == 0 or int(self.points.min()) < 0 or int(self.points.max()) > 67:
            raise ValueError("points must be indices of dlib's 68 landmarks (0..67)")
        self.sigma, self.combine, self.out_size, self.dtype = sigma, combine, out_size, dtype
        self.frame_size = frame_size  # only for samples without gray or flow to take the size from

    def __call__(self, sample: dict) -> dict:
        if "landmarks" not in sample:
            raise KeyError("KeypointHeatmaps needs landmarks: read with streams=(..., 'landmarks')")
        if "gray" in sample or "flow" in sample:
            size = _spatial_size(sample)
        elif self.frame_size is not None:
            size = (self.frame_size, self.frame_size)
        else:
            raise ValueError("no gray or flow in the sample to take the frame size from: pass frame_size")
        out = dict(sample)
        lm = torch.as_tensor(sample["landmarks"])[..., self.points, :]
        out["heatmaps"] = keypoint_heatmaps(lm, size, self.sigma, self.out_size, self.combine).to(self.dtype)
        return out


class AudioLogMel:
    """Add ``sample["audio_mel"]``: log-mel features of ``sample["audio"]`` aligned to the frames,
    (T * per_frame, n_mels) float32; mel frames [t*per_frame, (t+1)*per_frame) belong to video frame t
    (see flowprep.dataset.audio.log_mel; on a batch on the GPU it is cheaper than in workers)."""

    def __init__(self, n_mels: int = 80, per_frame: int = 4, drop_audio: bool = False):
        self.n_mels, self.per_frame, self.drop_audio = n_mels, per_frame, drop_audio

    def __call__(self, sample: dict) -> dict:
        from .dataset.audio import log_mel

        out = dict(sample)
        frames = len(sample["gray"]) if "gray" in sample else len(sample["boundary"]) if "boundary" in sample else None
        out["audio_mel"] = log_mel(sample["audio"], int(sample["audio_rate"]), float(sample["fps"]), frames,
                                   n_mels=self.n_mels, per_frame=self.per_frame)
        if self.drop_audio:
            del out["audio"]
        return out
