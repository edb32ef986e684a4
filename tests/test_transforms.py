"""Two-stream augmentation: both streams move together, and a flip is a physically right flip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from flowprep.flow import get_backend
from flowprep.transforms import (CenterCrop, Compose, Normalize, RandomCrop, RandomHorizontalFlip, TimeMask,
                                 hflip)
from tests import media

@pytest.fixture(scope="module")
def moving_clip():
    """Real texture (a photo) moving right and down by a known amount, with its DIS flow."""
    photo = media.grace_hopper()
    h, w = photo.shape
    crops = []
    for t in range(6):
        shift = np.float32([[1, 0, 1.5 * t], [0, 1, 0.5 * t]])  # content moves +1.5 px/frame in x, +0.5 in y
        crops.append(cv2.warpAffine(photo, shift, (w, h), flags=cv2.INTER_LINEAR)[150:262, 200:312])
    gray = np.stack(crops)
    flow = get_backend("dis", preset="medium")(gray[:-1], gray[1:])
    landmarks = np.random.default_rng(0).uniform(10, 100, (6, 68, 2)).astype(np.float32)
    return {"gray": torch.from_numpy(gray), "flow": torch.from_numpy(flow), "landmarks": torch.from_numpy(landmarks)}


def test_flow_of_flipped_frames_is_flipped_negated_flow(moving_clip):
    flipped = hflip(moving_clip)
    dis = get_backend("dis", preset="medium")
    g = flipped["gray"].numpy()
    recomputed = dis(g[:-1], g[1:])
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))
    err = np.abs(recomputed[inner] - flipped["flow"].numpy()[inner])
    assert np.median(err) < 0.1
    # the flipped motion goes left: dx negative, dy unchanged
    assert np.median(flipped["flow"][:, 0].numpy()[:, 16:-16, 16:-16]) == pytest.approx(-1.5, abs=0.15)
    assert np.median(flipped["flow"][:, 1].numpy()[:, 16:-16, 16:-16]) == pytest.approx(0.5, abs=0.15)

def test_flip_twice_is_identity_and_mirrors_landmarks(moving_clip):
    twice = hflip(hflip(moving_clip))
    for key in ("gray", "flow", "landmarks"):
        assert torch.allclose(twice[key].float(), moving_clip[key].float())
    once = hflip(moving_clip)
    # the left mouth corner (48) becomes the right one (54), mirrored about the crop's centre line
    assert once["landmarks"][0, 54, 0] == pytest.approx(111 - moving_clip["landmarks"][0, 48, 0].item())
    assert once["landmarks"][0, 54, 1] == pytest.approx(moving_clip["landmarks"][0, 48, 1].item())

def test_random_crop_same_window_for_both_streams(moving_clip):
    crop = RandomCrop(100, seed=7)
    out = crop(moving_clip)
    assert out["gray"].shape == (6, 100, 100) and out["flow"].shape == (5, 2, 100, 100)
    # find the offset from the gray stream and check the flow stream was cut at the same place
    g0 = moving_clip["gray"][0].numpy()
    hits = [(t, l) for t in range(13) for l in range(13) if np.array_equal(g0[t:t + 100, l:l + 100],
                                                                            out["gray"][0].numpy())]
    assert len(hits) == 1
    t, l = hits[0]
    assert torch.equal(out["flow"], moving_clip["flow"][..., t:t + 100, l:l + 100])
    assert torch.allclose(out["landmarks"], moving_clip["landmarks"] - torch.tensor([l, t], dtype=torch.float32))

def test_seeded_randomness_is_reproducible(moving_clip):
    def run(seed):
        aug = Compose([RandomCrop(104, seed=seed), RandomHorizontalFlip(seed=seed + 1), TimeMask(2, 1.0, seed=seed)])
        return [aug(moving_clip)["gray"] for _ in range(5)]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))

def test_center_crop_normalize_and_time_mask(moving_clip):
    out = Normalize(0.5, 0.25, flow_std=2.0)(CenterCrop(96)(moving_clip))
    assert out["gray"].dtype == torch.float32 and out["gray"].shape == (6, 96, 96)
    raw = moving_clip["gray"][:, 8:104, 8:104].float() / 255
    assert torch.allclose(out["gray"], (raw - 0.5) / 0.25)
    assert torch.allclose(out["flow"], moving_clip["flow"][..., 8:104, 8:104] / 2.0)
    masked = TimeMask(max_frames=2, p=1.0, seed=0)(moving_clip)
    zero = [t for t in range(6) if not masked["gray"][t].any()]
    assert 1 <= len(zero) <= 2 and zero == list(range(zero[0], zero[0] + len(zero)))
