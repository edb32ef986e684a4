"""Keypoint heatmaps: drawn where the landmarks are after crop and flip, on the same pixels as the crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowprep.transforms import (
    MOUTH_POINTS,
    Compose,
    KeypointHeatmaps,
    RandomCrop,
    RandomHorizontalFlip,
    TimeMask,
    MIRROR_68,
    hflip,
    keypoint_heatmaps,
)

T, S = 4, 112


def _sample(seed: int = 0) -> dict:
    """Integer landmarks spread over the crop, and a gray frame with a marker of value 100 + k at point k."""
    rng = np.random.default_rng(seed)
    lm = np.zeros((T, 68, 2), np.float32)
    gray = np.zeros((T, S, S), np.uint8)
    for t in range(T):
        cells = rng.choice(20 * 20, 68, replace=False)  # distinct 5-px cells: no two points share a pixel
        lm[t, :, 0] = 8 + 5 * (cells % 20)
        lm[t, :, 1] = 8 + 5 * (cells // 20)
        gray[t, lm[t, :, 1].astype(int), lm[t, :, 0].astype(int)] = 100 + np.arange(68)
    flow = torch.zeros(T - 1, 2, S, S)
    return {"gray": torch.from_numpy(gray), "flow": flow, "landmarks": torch.from_numpy(lm).to(torch.float16)}


def _peak(channel: torch.Tensor) -> tuple[int, int]:
    y, x = divmod(int(channel.argmax()), channel.shape[-1])
    return x, y


def test_peaks_sit_at_the_transformed_landmarks_after_crop_and_flip():
    original = _sample()
    crop_size = 96
    aug = Compose([RandomCrop(crop_size, seed=3), RandomHorizontalFlip(p=1.0, seed=0),
                   KeypointHeatmaps(sigma=1.5, points="all")])
    crop = RandomCrop(crop_size, seed=3)  # the same draw, to know the window
    top = int(crop.rng.integers(0, S - crop_size + 1))
    left = int(crop.rng.integers(0, S - crop_size + 1))
    out = aug(dict(original))
    heat = out["heatmaps"]
    assert heat.shape == (T, 68, crop_size, crop_size) and heat.dtype == torch.float32
    lm = original["landmarks"].float().numpy()
    checked = 0
    for t in range(T):
        for k in range(68):
            # after the flip, channel k is dlib point k of the mirrored face: the original point MIRROR_68[k]
            src = MIRROR_68[k]
            x, y = lm[t, src, 0] - left, lm[t, src, 1] - top
            x = (crop_size - 1) - x
            if not (0 <= x < crop_size and 0 <= y < crop_size):
                assert heat[t, k].max() < 0.5  # cropped away: at most a tail of the Gaussian
                continue
            assert _peak(heat[t, k]) == (int(x), int(y))
            assert heat[t, k, int(y), int(x)] == pytest.approx(1.0)
            # the same pixel of the transformed crop holds the marker of that original point
            assert int(out["gray"][t, int(y), int(x)]) == 100 + src
            checked += 1
    assert checked > 150


def test_mouth_points_max_and_sum_and_resolution():
    sample = _sample(1)
    mouth = KeypointHeatmaps(sigma=2.0)(sample)["heatmaps"]
    assert mouth.shape == (T, 20, S, S) and len(MOUTH_POINTS) == 20
    lm = sample["landmarks"].float()
    for j, k in enumerate(MOUTH_POINTS):
        assert _peak(mouth[0, j]) == (int(lm[0, k, 0]), int(lm[0, k, 1]))
    one = KeypointHeatmaps(sigma=2.0, combine="max")(sample)["heatmaps"]
    assert one.shape == (T, 1, S, S)
    assert torch.allclose(one[:, 0], mouth.amax(dim=1))
    summed = KeypointHeatmaps(sigma=2.0, combine="sum")(sample)["heatmaps"]
    assert torch.allclose(summed[:, 0], mouth.sum(dim=1))
    # at half resolution the peak is at half the coordinates
    half = KeypointHeatmaps(sigma=2.0, out_size=56, dtype=torch.float16)(sample)["heatmaps"]
    assert half.shape == (T, 20, 56, 56) and half.dtype == torch.float16
    x, y = _peak(half[0, 0].float())
    assert abs(x - (lm[0, 48, 0] + 0.5) / 2 + 0.5) <= 0.5 and abs(y - (lm[0, 48, 1] + 0.5) / 2 + 0.5) <= 0.5


def test_sub_pixel_centre_and_missing_points():
    pts = torch.tensor([[[10.25, 20.75], [float("nan"), 5.0]]])
    heat = keypoint_heatmaps(pts, 32, sigma=2.0)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cx = (heat[0, 0] * xs).sum() / heat[0, 0].sum()
    cy = (heat[0, 0] * ys).sum() / heat[0, 0].sum()
    assert float(cx) == pytest.approx(10.25, abs=0.01) and float(cy) == pytest.approx(20.75, abs=0.01)
    assert not heat[0, 1].any()  # a point that is not finite draws nothing


def test_order_is_enforced_and_time_mask_follows():
    sample = KeypointHeatmaps()(_sample())
    with pytest.raises(ValueError, match="after KeypointHeatmaps"):
        RandomCrop(96, seed=0)(sample)
    with pytest.raises(ValueError, match="after KeypointHeatmaps"):
        hflip(sample)
    masked = TimeMask(max_frames=2, p=1.0, seed=0)(sample)
    blank = [t for t in range(T) if not masked["gray"][t].any()]
    assert blank and all(not masked["heatmaps"][t].any() for t in blank)
    with pytest.raises(KeyError, match="landmarks"):
        KeypointHeatmaps()({"gray": torch.zeros(2, 8, 8)})
