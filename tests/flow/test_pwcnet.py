"""PWC-Net through ptlflow: loading (offline, weights only), batching, equality with ptlflow itself.

No weights can be downloaded here: the checkpoint is ptlflow's real PWC-Net with a seeded random
init, written in the format real checkpoints have and loaded through the same path.
"""

from __future__ import annotations

import hashlib
import pickle
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from flowprep.errors import FlowprepError
from flowprep.flow import get_backend
from flowprep.flow import pwcnet
from tests import media

SPOTS = [(150, 200), (250, 180), (300, 260)]  # (y, x) of 112x112 windows on the photo


def crops(dy: int = 0, dx: int = 0) -> np.ndarray:
    photo = media.grace_hopper()
    return np.stack([photo[y - dy:y - dy + 112, x - dx:x - dx + 112] for y, x in SPOTS])


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory) -> Path:
    return pwcnet.save_random_pwcnet_checkpoint(tmp_path_factory.mktemp("ckpt") / "pwcnet-random.ckpt", seed=0)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: nothing may be fetched at run time."""
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_batched_flow_equals_per_pair_and_ptlflows_own_forward(random_ckpt, one_thread):
    import ptlflow
    import torch
    from ptlflow.utils.io_adapter import IOAdapter

    prev, nxt = crops(), crops(-1, 2)
    # ptlflow's own forward here; the fast path (the default) against it: test_pwcnet_fast.py
    backend = get_backend("pwcnet", ckpt=str(random_ckpt), device="cpu", batch_pairs=2, impl="ptlflow")  # 2 passes
    flow = backend(prev, nxt)
    assert flow.shape == (3, 2, 112, 112) and flow.dtype == np.float32 and np.isfinite(flow).all()
    assert np.abs(flow).mean() > 1.0  # random weights still give flow; zeros would prove nothing below
    single = np.concatenate([backend(prev[i:i + 1], nxt[i:i + 1]) for i in range(3)])
    # Batching only reorders float sums: measured 1.1e-4 px at most (median 6e-6) on random-weight
    # flow of up to 49 px, whose random correlations amplify rounding more than trained ones.
    np.testing.assert_allclose(flow, single, rtol=0, atol=5e-4)
    assert np.median(np.abs(flow - single)) < 1e-4

    # The reference: ptlflow loads the file itself and prepares RGB uint8 HWC images its own way.
    model = ptlflow.get_model("pwcnet", ckpt_path=str(random_ckpt)).eval()
    for i in range(3):
        rgb = [np.repeat(frame[:, :, None], 3, axis=2) for frame in (prev[i], nxt[i])]
        adapter = IOAdapter(model.output_stride, rgb[0].shape[:2])
        with torch.inference_mode():
            reference = model(adapter.prepare_inputs(rgb))["flows"][0, 0].numpy()
        np.testing.assert_allclose(single[i], reference, rtol=0, atol=1e-4)

    info = backend.describe()
    assert info["name"] == "pwcnet" and info["device"] == "cpu" and info["ckpt"] == str(random_ckpt)
    assert info["ckpt_sha256"] == hashlib.sha256(random_ckpt.read_bytes()).hexdigest()
    assert info["options"] == {"ckpt": str(random_ckpt), "device": "cpu", "batch_pairs": 2, "impl": "ptlflow",
                               "dtype": "fp32", "channels_last": True, "compile": False}

    # How it reaches a Ray worker: rebuilt from name and options there, the model loaded anew.
    copy = pickle.loads(pickle.dumps(backend))
    assert copy.model is not backend.model and len(pickle.dumps(backend)) < 1000
    np.testing.assert_array_equal(copy(prev[:1], nxt[:1]), single[:1])


def test_bare_state_dict_loads_the_same_weights(random_ckpt, tmp_path):
    import torch

    bare = tmp_path / "bare.pt"
    torch.save(torch.load(random_ckpt, weights_only=True)["state_dict"], bare)
    a = pwcnet.load_pwcnet(random_ckpt).state_dict()
    b = pwcnet.load_pwcnet(bare).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fresh = pwcnet.new_pwcnet().state_dict()  # a different random init: loading really replaced weights
    assert not torch.equal(fresh["conv1a.0.weight"], a["conv1a.0.weight"])


class _RunsCodeWhenUnpickled:
    marker: Path

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_checkpoints_are_never_unpickled_beyond_weights(random_ckpt, tmp_path):
    import torch

    evil = _RunsCodeWhenUnpickled()
    evil.marker = tmp_path / "code-ran"
    state = torch.load(random_ckpt, weights_only=True)
    bad = tmp_path / "evil.ckpt"
    torch.save({**state, "hyper_parameters": {"callback": evil}}, bad)
    with pytest.raises(FlowprepError, match="not a readable weights-only checkpoint"):
        get_backend("pwcnet", ckpt=str(bad), device="cpu")
    assert not evil.marker.exists()

    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"conv1a.0.weight": torch.zeros(16, 3, 3, 3), "head.weight": torch.zeros(1)}}, other)
    with pytest.raises(FlowprepError, match=r"not a ptlflow PWC-Net checkpoint: parameters missing \d+ .*unexpected 1 "
                                            r"\(e\.g\. head\.weight\)"):
        get_backend("pwcnet", ckpt=str(other), device="cpu")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(FlowprepError, match="junk.ckpt is not a readable"):
        get_backend("pwcnet", ckpt=str(junk), device="cpu")


def test_missing_named_weights_fail_fast_and_say_what_to_do(empty_hub_cache, no_network, tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(FlowprepError) as err:
        get_backend("pwcnet", ckpt="things")
    assert time.perf_counter() - t0 < 5
    message = str(err.value)
    assert str(empty_hub_cache / "pwcdcnet-things-cc223701.ckpt") in message  # which file goes where
    assert pwcnet.NAMED_CHECKPOINTS["things"] in message and "nothing is downloaded" in message
    assert "--flow-ckpt /path/to/pwcdcnet-things-cc223701.ckpt" in message and "--flow dis" in message
    assert "\n" not in message  # one line
    with pytest.raises(FlowprepError, match="no such file, and not one of things, sintel"):
        get_backend("pwcnet", ckpt=str(tmp_path / "nope.ckpt"))
    with pytest.raises(FlowprepError, match="batch_pairs"):
        get_backend("pwcnet", ckpt="things", batch_pairs=0)


def test_named_weights_are_read_from_the_hub_cache(random_ckpt, empty_hub_cache, no_network):
    """Where ptlflow keeps its published weights: a file put there by hand is found by its name."""
    cached = empty_hub_cache / pwcnet.NAMED_CHECKPOINTS["sintel"].rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(random_ckpt.read_bytes())
    assert pwcnet.resolve_checkpoint("sintel") == cached
    assert get_backend("pwcnet", ckpt="sintel", device="cpu").describe()["ckpt"] == str(cached)


def test_names_match_ptlflows_published_weights():
    import ptlflow

    assert pwcnet.NAMED_CHECKPOINTS == ptlflow.get_model_reference("pwcnet").pretrained_checkpoints
