"""Flow backends: sign and scale on known motion, the contract, PWC-Net loading and equivalence."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from flowprep.errors import FlowprepError
from flowprep.flow import available_backends, dequantize_flow, get_backend, quantize_flow_stats
from tests import media

INNER = (slice(None), slice(None), slice(20, -20), slice(20, -20))


def shifted_pair(dx: float, dy: float, n: int = 3):
    """Crops of a real photo and the same crops with the content moved by (dx, dy) px."""
    photo = media.grace_hopper()
    h, w = photo.shape
    moved = cv2.warpAffine(photo, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), flags=cv2.INTER_CUBIC)
    spots = [(150, 200), (250, 180), (120, 260)][:n]
    prev = np.stack([photo[y:y + 112, x:x + 112] for y, x in spots])
    nxt = np.stack([moved[y:y + 112, x:x + 112] for y, x in spots])
    return prev, nxt


@pytest.mark.parametrize("name", ["dis", "farneback"])
@pytest.mark.parametrize("dx,dy", [(2.0, -1.0), (0.5, 1.5), (0.0, 0.0)])
def test_sign_and_scale_on_known_shift(name, dx, dy):
    prev, nxt = shifted_pair(dx, dy)
    flow = get_backend(name)(prev, nxt)
    assert flow.shape == (3, 2, 112, 112) and flow.dtype == np.float32
    assert np.median(flow[INNER][:, 0]) == pytest.approx(dx, abs=0.15)  # channel 0 is dx
    assert np.median(flow[INNER][:, 1]) == pytest.approx(dy, abs=0.15)  # channel 1 is dy


def test_contract_is_checked():
    dis = get_backend("dis", preset="fast")
    a = np.zeros((2, 32, 32), np.uint8)
    with pytest.raises(FlowprepError, match="uint8"):
        dis(a.astype(np.float32), a.astype(np.float32))
    with pytest.raises(FlowprepError, match="one shape"):
        dis(a, a[:1])
    assert dis(a[:0], a[:0]).shape == (0, 2, 32, 32)
    with pytest.raises(FlowprepError, match="available: dis, farneback, pwcnet"):
        get_backend("raft")
    with pytest.raises(FlowprepError, match="preset"):
        get_backend("dis", preset="slowest")
    assert available_backends() == ["dis", "farneback", "pwcnet"]


def test_quantisation_round_trip_and_saturation():
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 3, (4, 2, 16, 16)).astype(np.float32)
    flow[0, 0, 0, 0] = 50.0  # beyond int8 at 0.1 px (12.7 px)
    q, saturated = quantize_flow_stats(flow, "int8", 0.1)
    back = dequantize_flow(q, 0.1)
    inside = np.abs(flow) <= 12.7
    assert np.abs(back - flow)[inside].max() <= 0.05 + 1e-6
    assert saturated == int(np.count_nonzero(~inside)) and back[0, 0, 0, 0] == pytest.approx(12.7)
    assert q.min() >= -127  # symmetric: negating dx for a flip never overflows
    q16, sat16 = quantize_flow_stats(flow, "int16", 0.01)
    assert sat16 == 0 and np.abs(dequantize_flow(q16, 0.01) - flow).max() <= 0.005 + 1e-6
    h, _ = quantize_flow_stats(flow, "float16")
    assert h.dtype == np.float16


# ---- PWC-Net (ptlflow's real architecture, a seeded random checkpoint) ------------------------
@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory):
    from flowprep.flow.pwcnet import save_random_pwcnet_checkpoint

    return save_random_pwcnet_checkpoint(tmp_path_factory.mktemp("ckpt") / "pwcnet-random.ckpt", seed=0)


def test_pwcnet_batched_equals_per_pair_and_ptlflow_reference(random_ckpt):
    import ptlflow
    import torch

    torch.set_num_threads(2)
    prev, nxt = shifted_pair(1.0, 0.5, n=3)
    backend = get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", batch_pairs=2)  # 3 pairs: 2 calls
    flow = backend(prev, nxt)
    assert flow.shape == (3, 2, 112, 112) and flow.dtype == np.float32 and np.isfinite(flow).all()
    single = np.concatenate([backend(prev[i:i + 1], nxt[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(flow, single, atol=1e-3)
    # ptlflow's own model and input convention (RGB-replicated, 0..1, [B,2,3,H,W]) on the same weights
    model = ptlflow.get_model("pwcnet", ckpt_path=str(random_ckpt)).eval()
    images = torch.from_numpy(np.stack([prev, nxt], 1)).float()[:, :, None].repeat(1, 1, 3, 1, 1) / 255
    with torch.inference_mode():
        reference = model({"images": images})["flows"][:, 0].numpy()
    np.testing.assert_allclose(flow, reference, atol=1e-3)
    info = backend.describe()
    assert info["name"] == "pwcnet" and len(info["ckpt_sha256"]) == 64


def test_pwcnet_missing_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(FlowprepError, match=r"pwcnet-things-6a2e540b\.ckpt.*--flow-ckpt.*--flow dis"):
        get_backend("pwcnet", ckpt="things")
    with pytest.raises(FlowprepError, match="no such file"):
        get_backend("pwcnet", ckpt=str(tmp_path / "nope.ckpt"))
    bad = tmp_path / "bad.ckpt"
    import torch

    torch.save({"state_dict": {"conv1a.0.weight": torch.zeros(1)}}, bad)
    with pytest.raises(FlowprepError, match="not a ptlflow PWC-Net checkpoint"):
        get_backend("pwcnet", ckpt=str(bad), device="cpu")
