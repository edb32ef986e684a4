"""Normalize and flow_to_pixels compose: the same floats in DataLoader workers or on a batch after
the transfer, from pixels or from the shard's stored integers; normalised flow is never rescaled."""

from __future__ import annotations

import pytest
import torch

from flowprep.dataset import flow_to_pixels, pad_collate
from flowprep.transforms import Compose, Normalize, RandomCrop

NORM = Normalize(gray_mean=0.4, gray_std=0.2, flow_std=2.5)


def _stored(t: int, scale: float, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"gray": torch.randint(0, 256, (t, 8, 8), dtype=torch.uint8, generator=g),
            "flow": torch.randint(-127, 128, (t - 1, 2, 8, 8), generator=g).to(torch.int8),
            "flow_scale": scale, "boundary": torch.ones(t), "label": 0}


def test_sample_and_batch_give_the_same_floats():
    samples = [_stored(5, 0.1, 0), _stored(5, 0.05, 1)]  # shards may differ in scale: one per clip
    in_workers = pad_collate([NORM(s) for s in samples])
    on_device = NORM(pad_collate(samples))
    for key in ("gray", "flow"):
        assert on_device[key].dtype == torch.float32
        assert torch.allclose(in_workers[key], on_device[key])
    expected = samples[1]["flow"].float() * 0.05 / 2.5
    assert torch.allclose(on_device["flow"][1], expected)
    assert torch.allclose(on_device["gray"][0], (samples[0]["gray"].float() / 255 - 0.4) / 0.2)


def test_pixels_in_pixels_out():
    s = _stored(4, 0.1, 2)
    pixels = {**s, "flow": flow_to_pixels(s), "flow_scale": 1.0}  # flow_dtype="float32" reads look like this
    assert torch.allclose(NORM(pixels)["flow"], NORM(s)["flow"])
    assert torch.equal(flow_to_pixels(pixels), pixels["flow"])


def test_normalised_flow_is_refused_not_rescaled():
    out = NORM(_stored(4, 0.1, 3))
    assert "flow_scale" not in out
    with pytest.raises(ValueError, match="Normalize already divided it by the flow std"):
        flow_to_pixels(out)
    with pytest.raises(ValueError, match="Normalize already"):
        NORM(out)  # twice would divide twice


def test_crop_keeps_integers():
    s = Compose([RandomCrop(6, seed=0)])(_stored(4, 0.1, 4))
    assert s["gray"].dtype == torch.uint8 and s["flow"].dtype == torch.int8 and s["flow"].shape == (3, 2, 6, 6)
    assert repr(Compose([RandomCrop(6), NORM])) == "Compose(RandomCrop, Normalize)"
    assert repr(NORM) == "Normalize(gray_mean=0.4, gray_std=0.2, flow_std=2.5)"
