"""The fast PWC-Net path against ptlflow's own forward, and its cost volume against a plain loop.

Same weights (ptlflow's PWC-Net with a seeded random init, saved and loaded like real weights;
ptlflow's published "things" weights too when torch hub's cache has them), same real-looking
input: 112x112 windows of a photo and the same windows shifted by a few pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowprep.errors import FlowprepError
from flowprep.flow import get_backend, pwcnet
from tests import media

SPOTS = [(150, 200), (250, 180), (300, 260), (200, 300)]  # (y, x) of 112x112 windows on the photo
SHIFTS = [(1, -2), (-2, 3), (3, 1), (0, -4)]  # (dy, dx) of the second frame's window, per pair


def pairs() -> tuple[np.ndarray, np.ndarray]:
    photo = media.grace_hopper()
    prev = np.stack([photo[y:y + 112, x:x + 112] for y, x in SPOTS])
    nxt = np.stack([photo[y - dy:y - dy + 112, x - dx:x - dx + 112] for (y, x), (dy, dx) in zip(SPOTS, SHIFTS)])
    return prev, nxt


def naive_correlation(f1, f2, r: int):
    """sum_c f1[c,y,x] * f2[c,y+dy,x+dx], one displacement at a time (zero outside f2)."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = f1.shape
    d = 2 * r + 1
    p = F.pad(f2, (r, r, r, r))
    out = torch.zeros(b, d * d, h, w, dtype=f1.dtype)
    for i in range(d):
        for j in range(d):
            out[:, i * d + j] = (f1 * p[:, :, i:i + h, j:j + w]).sum(1)
    return out


def epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=1)


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory):
    return pwcnet.save_random_pwcnet_checkpoint(tmp_path_factory.mktemp("ckpt") / "pwcnet-random.ckpt", seed=0)


@pytest.mark.parametrize("shape", [(1, 196, 2, 2), (3, 32, 32, 32), (2, 7, 5, 9), (4, 3, 1, 6)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("r", [4, 2])
def test_correlation_equals_a_loop_over_displacements(shape, channels_last, r):
    import torch

    from flowprep.flow.pwcnet_fast import local_correlation

    g = torch.Generator().manual_seed(sum(shape) + r)
    f1, f2 = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    if channels_last:
        f1, f2 = f1.contiguous(memory_format=torch.channels_last), f2.contiguous(memory_format=torch.channels_last)
    got = local_correlation(f1, f2, r)
    want = naive_correlation(f1.contiguous(), f2.contiguous(), r)
    assert got.shape == want.shape
    # divided by C as PWC-Net uses it: sums of C products of N(0,1) values, so per-channel scale
    torch.testing.assert_close(got / shape[1], want / shape[1], rtol=0, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_correlation_equals_ptlflows_fallback():
    import torch
    from ptlflow.utils.correlation import iter_spatial_correlation_sample

    from flowprep.flow.pwcnet_fast import local_correlation

    g = torch.Generator().manual_seed(1)
    f1, f2 = torch.randn(2, 64, 16, 16, generator=g), torch.randn(2, 64, 16, 16, generator=g)
    ref = iter_spatial_correlation_sample(f1, f2, patch_size=9).view(2, 81, 16, 16)
    torch.testing.assert_close(local_correlation(f1, f2) / 64, ref / 64, rtol=0, atol=1e-5)


def test_fast_flow_equals_ptlflows_forward(random_ckpt, one_thread):
    prev, nxt = pairs()
    reference = get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", impl="ptlflow")(prev, nxt)
    assert np.abs(reference).mean() > 1.0  # random weights still give flow; zeros would prove nothing
    for channels_last in (True, False):
        fast = get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", batch_pairs=3, channels_last=channels_last)
        flow = fast(prev, nxt)  # 4 pairs: a batch of 3 and one of 1
        assert flow.shape == reference.shape and flow.dtype == np.float32
        err = epe(flow, reference)
        assert err.mean() < 0.01, f"channels_last={channels_last}: mean EPE {err.mean():.2e} px"
        # measured ~3e-5 px mean, 2.5e-4 px max: float rounding only
        assert err.mean() < 1e-3 and err.max() < 0.01
    # the same weights object: FastPWCNet reuses ptlflow's modules, it does not copy them
    assert fast.fast.net is fast.model
    assert set(fast.fast.state_dict()) == {f"net.{k}" for k in fast.model.state_dict()}

    # bf16 autocast (CPU): recorded, not a requirement; random weights amplify rounding
    bf16 = get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", dtype="bf16")(prev[:1], nxt[:1])
    print(f"\nbf16 vs fp32 reference: mean EPE {epe(bf16, reference[:1]).mean():.3f} px "
          f"(flow magnitude {np.linalg.norm(reference[:1], axis=1).mean():.1f} px)")
    assert np.isfinite(bf16).all()


def test_fast_path_on_ptlflows_published_weights(one_thread):
    path = pwcnet.checkpoint_cache_dir() / pwcnet.NAMED_CHECKPOINTS["things"].rsplit("/", 1)[1]
    if not path.is_file():
        pytest.skip(f"ptlflow's 'things' weights are not in torch hub's cache ({path}); nothing can be downloaded here")
    prev, nxt = pairs()
    reference = get_backend("pwcnet", ckpt=str(path), device="cpu", impl="ptlflow")(prev, nxt)
    flow = get_backend("pwcnet", ckpt=str(path), device="cpu")(prev, nxt)
    assert epe(flow, reference).mean() < 0.01
    # trained weights on shifted windows of one photo: the flow is the shift (dx, dy)
    for f, (dy, dx) in zip(flow, SHIFTS):
        centre = f[:, 28:84, 28:84].reshape(2, -1).mean(1)
        assert np.allclose(centre, (dx, dy), atol=0.5)


def test_grid_clip_pairs(random_ckpt, one_thread, grid_dir):
    clips = media.grid_clips()
    from flowprep.decode import decode_gray

    frames = decode_gray(clips[0]).frames
    crop = frames[:6, 150:262, 120:232]  # a 112x112 window around the mouth region
    prev, nxt = np.ascontiguousarray(crop[:-1]), np.ascontiguousarray(crop[1:])
    reference = get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", impl="ptlflow")(prev, nxt)
    flow = get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu")(prev, nxt)
    assert epe(flow, reference).mean() < 0.01


def test_options_are_checked_and_travel(random_ckpt):
    import pickle

    with pytest.raises(FlowprepError, match="impl"):
        get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", impl="cuda-ext")
    with pytest.raises(FlowprepError, match="dtype"):
        get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", dtype="int8")
    with pytest.raises(FlowprepError, match="fp16 needs a CUDA"):
        get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", dtype="fp16")
    with pytest.raises(FlowprepError, match="impl=.fast. only"):
        get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", impl="ptlflow", dtype="bf16")
    backend = get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", batch_pairs=7, channels_last=False)
    copy = pickle.loads(pickle.dumps(backend))
    assert copy.options == backend.options and copy.fast is not None and not copy.fast.channels_last
