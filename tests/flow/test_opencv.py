"""OpenCV flow backends on motion whose flow is known, and the backend contract."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from flowprep.decode import decode_gray
from flowprep.errors import FlowprepError
from flowprep.flow import FlowBackend, available_backends, get_backend
from tests import media

CENTRE = (slice(None), slice(None), slice(24, -24), slice(24, -24))  # away from borders that leave the view
SPOTS = [(150, 200), (250, 180), (300, 260)]  # (y, x) of 112x112 windows on the photo: eyes, nose, mouth


def windows(image: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
    return np.stack([image[y - dy:y - dy + 112, x - dx:x - dx + 112] for y, x in SPOTS])


def integer_shift(dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops of a real photo and the crops whose content sits (dx, dy) px further on: an exact shift."""
    photo = media.grace_hopper()
    return windows(photo), windows(photo, dy, dx)


def warped(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """prev crops, next = prev moved by the 2x3 affine ``matrix`` (content at p goes to A p), true flow."""
    photo = media.grace_hopper()
    moved = cv2.warpAffine(photo, matrix, photo.shape[::-1], flags=cv2.INTER_CUBIC)
    ys, xs = np.mgrid[0:photo.shape[0], 0:photo.shape[1]].astype(np.float32)
    true_dx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2] - xs
    true_dy = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2] - ys
    truth = np.stack([windows(true_dx), windows(true_dy)], axis=1)
    return windows(photo), windows(moved), truth


@pytest.mark.parametrize("name", ["dis", "farneback"])
@pytest.mark.parametrize("dx,dy", [(2, -1), (0.5, 1.5), (0, 0)])
def test_uniform_shift_gives_its_flow_in_pixels_with_dx_first(name, dx, dy):
    if float(dx).is_integer() and float(dy).is_integer():
        prev, nxt = integer_shift(int(dx), int(dy))
    else:
        prev, nxt, _ = warped(np.float32([[1, 0, dx], [0, 1, dy]]))
    flow = get_backend(name)(prev, nxt)
    assert flow.shape == (3, 2, 112, 112) and flow.dtype == np.float32
    centre = flow[CENTRE]
    assert np.median(centre[:, 0]) == pytest.approx(dx, abs=0.15)  # channel 0 is dx
    assert np.median(centre[:, 1]) == pytest.approx(dy, abs=0.15)  # channel 1 is dy
    # most of the centre, not just its median, sees the shift
    error = np.hypot(centre[:, 0] - dx, centre[:, 1] - dy)
    assert np.mean(error < 0.5) > 0.9


# median end-point error allowed; the flow is 3.3 px on average, measured: 0.39, 0.21, 0.10, 0.17
@pytest.mark.parametrize("name,preset,limit", [("dis", "ultrafast", 0.6), ("dis", "fast", 0.35),
                                               ("dis", "medium", 0.15), ("farneback", None, 0.3)])
def test_rotation_and_zoom_flow_follows_position(name, preset, limit):
    # 2 degrees and 3% zoom about the photo's mouth: flow differs across the crop, both components
    matrix = cv2.getRotationMatrix2D((270.0, 300.0), 2.0, 1.03).astype(np.float32)
    prev, nxt, truth = warped(matrix)
    backend = get_backend(name, preset=preset) if preset else get_backend(name)
    flow = backend(prev, nxt)
    epe = np.hypot(*(flow - truth)[CENTRE].transpose(1, 0, 2, 3))
    spread = np.hypot(*truth[CENTRE].transpose(1, 0, 2, 3)).std()
    assert spread > 0.5  # the truth is far from uniform: position matters
    assert np.median(epe) < limit


def test_flow_maps_next_back_onto_prev_on_a_grid_mouth(grid_dir):
    # real lip motion (a talking stretch of a GRID clip, a fixed window on the mouth): sampling next
    # at p + flow(p) reproduces prev better than next itself; the opposite sign makes it worse
    frames = decode_gray(media.grid_clips()[0]).frames[:, 150:262, 130:242]
    prev, nxt = frames[34:50], frames[35:51]
    ys, xs = np.mgrid[0:112, 0:112].astype(np.float32)
    inner = (slice(None), slice(8, -8), slice(8, -8))

    def mismatch(flow: np.ndarray) -> float:
        back = np.stack([cv2.remap(n, xs + f[0], ys + f[1], cv2.INTER_LINEAR) for n, f in zip(nxt, flow)])
        return float(np.abs(back.astype(np.float32) - prev)[inner].mean())

    unmoved = mismatch(np.zeros((len(prev), 2, 112, 112), np.float32))
    for name in ("dis", "farneback"):
        flow = get_backend(name)(prev, nxt)
        assert mismatch(flow) < 0.8 * unmoved, name  # measured 0.61 (dis), 0.64 (farneback)
        assert mismatch(-flow) > 1.2 * unmoved, name  # measured 1.48, 1.49


def test_n_pairs_in_n_flows_out_and_inputs_checked():
    dis = get_backend("dis", preset="fast")
    prev, nxt = integer_shift(1, 0)
    prev, nxt = np.concatenate([prev, prev[:2]]), np.concatenate([nxt, nxt[:2]])
    flow = dis(prev, nxt)
    assert flow.shape == (5, 2, 112, 112) and flow.dtype == np.float32 and flow.flags.c_contiguous
    np.testing.assert_array_equal(flow[3:], flow[:2])  # pair i's flow depends on pair i only
    np.testing.assert_array_equal(dis(prev[::2], nxt[::2]), flow[::2])  # strided views are fine
    assert dis(prev[:0], nxt[:0]).shape == (0, 2, 112, 112)
    with pytest.raises(FlowprepError, match="uint8"):
        dis(prev.astype(np.float32), nxt.astype(np.float32))
    with pytest.raises(FlowprepError, match=r"one shape.*\(5, 112, 112\) and \(4, 112, 112\)"):
        dis(prev, nxt[:4])
    with pytest.raises(FlowprepError, match=r"\[N,H,W\]"):
        dis(prev[0], nxt[0])  # one pair without its N axis
    with pytest.raises(FlowprepError, match="dis flow failed on 8x8 frames"):
        dis(prev[:, :8, :8], nxt[:, :8, :8])  # too small for DIS: an error, not a cv2 traceback


def test_registry_and_options():
    assert available_backends() == ["dis", "farneback", "ptlflow:MODEL", "pwcnet"]
    with pytest.raises(FlowprepError, match="unknown flow backend 'raft'; available: dis, farneback, ptlflow:MODEL, pwcnet"):
        get_backend("raft")
    with pytest.raises(FlowprepError, match="preset"):
        get_backend("dis", preset="slowest")
    with pytest.raises(FlowprepError, match="takes options threads, device; got preset"):
        get_backend("farneback", preset="fast")  # a typo or a wrong backend is not silently ignored
    with pytest.raises(FlowprepError, match="CPU only"):
        get_backend("dis", device="cuda")
    dis = get_backend("dis", preset="ultrafast", device="auto")
    assert isinstance(dis, FlowBackend) and dis.name == "dis" and dis.device == "cpu"
    assert dis.describe() == {"name": "dis", "device": "cpu", "options": {"preset": "ultrafast", "threads": 1}}
    assert cv2.getNumThreads() == 1  # one worker per core: OpenCV adds no threads of its own
    assert get_backend("farneback").describe()["params"]["levels"] == 3


@pytest.mark.parametrize("name", ["dis", "farneback"])
def test_pickled_backend_is_rebuilt_and_computes_the_same(name):
    # how a backend reaches a Ray worker: by name and options, rebuilt there
    backend = get_backend(name)
    copy = pickle.loads(pickle.dumps(backend))
    assert copy is not backend and copy.describe() == backend.describe()
    prev, nxt = integer_shift(2, -1)
    np.testing.assert_array_equal(copy(prev, nxt), backend(prev, nxt))
