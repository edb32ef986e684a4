"""Any ptlflow model (`--flow ptlflow:MODEL`): ptlflow's own model, checkpoint loading and forward,
gray replicated to three channels, batched; weights found on this machine or a one-line error.

Weights are each model's seeded random init saved in ptlflow's checkpoint format (nothing can be
downloaded here); the loading path is the one real weights take."""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import numpy as np
import pytest

from flowprep.errors import FlowprepError
from flowprep.flow import get_backend
from flowprep.flow.bench import frames
from flowprep.flow.ptlflow_models import named_checkpoints, save_random_checkpoint


@pytest.fixture(scope="module")
def rapidflow_ckpt(tmp_path_factory) -> Path:
    return save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "rapidflow-random.ckpt", "rapidflow", seed=0)


def test_batched_flow_is_ptlflows_own_forward(rapidflow_ckpt, one_thread):
    import ptlflow
    import torch
    from ptlflow.utils.io_adapter import IOAdapter

    prev, nxt = frames(3, seed=1)
    backend = get_backend("ptlflow:rapidflow", ckpt=str(rapidflow_ckpt), device="cpu", batch_pairs=2)  # 2 passes
    flow = backend(prev, nxt)
    assert flow.shape == (3, 2, 112, 112) and flow.dtype == np.float32 and np.isfinite(flow).all()
    assert np.abs(flow).mean() > 0.5  # random weights still give flow; zeros would prove nothing below
    assert backend.describe()["upscale"] == {"112x112": 1}  # rapidflow runs on 112 px crops as they are
    # The reference: ptlflow loads the file itself and prepares RGB uint8 HWC images its own way.
    model = ptlflow.get_model("rapidflow", ckpt_path=str(rapidflow_ckpt)).eval()
    for i in range(3):
        rgb = [np.repeat(frame[:, :, None], 3, axis=2) for frame in (prev[i], nxt[i])]
        adapter = IOAdapter(model.output_stride, rgb[0].shape[:2])
        with torch.inference_mode():
            reference = model(adapter.prepare_inputs(rgb))["flows"][0, 0].numpy()
        np.testing.assert_allclose(flow[i], reference, rtol=0, atol=1e-3)

    info = backend.describe()
    assert info["name"] == "ptlflow:rapidflow" and info["model"] == "rapidflow" and info["ckpt"] == str(rapidflow_ckpt)
    # how it reaches a Ray actor: rebuilt from its name and options there
    copy = pickle.loads(pickle.dumps(backend))
    assert copy.model is not backend.model and copy.name == "ptlflow:rapidflow"
    np.testing.assert_array_equal(copy(prev[:1], nxt[:1]), backend(prev[:1], nxt[:1]))


def test_weights_are_local_or_a_one_line_error(tmp_path, monkeypatch, rapidflow_ckpt):
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    names = named_checkpoints("neuflow2")
    assert set(names) >= {"mixed", "sintel"}
    with pytest.raises(FlowprepError) as err:
        get_backend("ptlflow:neuflow2", ckpt="mixed", device="cpu")
    message = str(err.value)
    assert "nothing is downloaded" in message and names["mixed"] in message and "\n" not in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / names["mixed"].rsplit("/", 1)[1]) in message
    with pytest.raises(FlowprepError, match=r"--flow-ckpt 'nothing': no such file, and not one of mixed, "):
        get_backend("ptlflow:neuflow2", ckpt="nothing", device="cpu")
    with pytest.raises(FlowprepError, match=r"ptlflow has no model 'raft_tiny' \(\d+ models; similar: raft, raft_small, "):
        get_backend("ptlflow:raft_tiny", ckpt=str(rapidflow_ckpt))
    with pytest.raises(FlowprepError, match=r"rapidflow-random.ckpt is not a ptlflow neuflow2 checkpoint"):
        get_backend("ptlflow:neuflow2", ckpt=str(rapidflow_ckpt), device="cpu")
