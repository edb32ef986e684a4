"""Reading published landmark files: the forms they come in, and the restricted unpickler that keeps a
hostile pickle from running anything."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from flowprep.cli import main as cli_main
from flowprep.roi.imported import LandmarkError, imported_landmarks, landmark_file, read_landmarks

T = 6


def _points(t: int = T) -> np.ndarray:
    return np.random.default_rng(0).uniform(50, 200, (t, 68, 2)).astype(np.float32)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_published_pickle_forms_load_under_every_protocol(tmp_path, protocol):
    pts = _points()
    frames = [pts[0], None, pts[2].astype(np.float64), pts[3].tolist(), pts[4], pts[5]]
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps(frames, protocol=protocol))
    got = read_landmarks(path)
    assert got.shape == (T, 68, 2) and got.dtype == np.float32
    assert np.isnan(got[1]).all() and np.allclose(got[[0, 2, 3, 4, 5]], pts[[0, 2, 3, 4, 5]])
    path.write_bytes(pickle.dumps(pts, protocol=protocol))  # one (T, 68, 2) array
    assert np.array_equal(read_landmarks(path), pts)


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("fn", [os.system, eval, exec, np.save])
def test_any_other_global_is_refused_before_it_runs(tmp_path, fn):
    marker = tmp_path / "ran.npy"
    args = {os.system: (f"touch {marker}",), np.save: (str(marker), [1])}.get(fn, (f"open({str(marker)!r}, 'w')",))
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps([_Call(fn, *args)]))
    with pytest.raises(LandmarkError, match="refused, nothing in it was run"):
        read_landmarks(path)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    ([np.zeros((5, 2))], "frame 0 holds"),
    ({"landmarks": 1}, "holds a dict"),
    (np.zeros((3, 5, 2)), "not \\(frames, 68, 2\\)"),
])
def test_wrong_shapes_say_what_they_hold(tmp_path, content, message):
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(LandmarkError, match=message):
        read_landmarks(path)


def test_npz_nan_rows_and_no_pickles(tmp_path):
    pts = _points()
    pts[2, 5] = np.nan  # one unknown point: the frame counts as missing
    np.savez(tmp_path / "a.npz", landmarks=pts)
    got = read_landmarks(tmp_path / "a.npz")
    assert np.isnan(got[2]).all() and np.array_equal(got[3], pts[3])
    np.savez(tmp_path / "b.npz", landmarks=np.array([pts[0], None], dtype=object))
    with pytest.raises(LandmarkError, match="not a readable .npz"):  # object arrays would unpickle
        read_landmarks(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", points=pts)
    with pytest.raises(LandmarkError, match="no array 'landmarks'"):
        read_landmarks(tmp_path / "c.npz")
    (tmp_path / "d.pkl").write_bytes(pickle.dumps([pts[0]])[:-5])
    with pytest.raises(LandmarkError, match="not a readable pickle"):
        read_landmarks(tmp_path / "d.pkl")


def test_lookup_by_clip_id_count_check_and_fallback(tmp_path):
    (tmp_path / "trainval" / "spk").mkdir(parents=True)
    np.savez(tmp_path / "trainval" / "spk" / "00001.npz", landmarks=_points())
    assert landmark_file(tmp_path, "trainval/spk/00001").name == "00001.npz"
    assert landmark_file(tmp_path, "../spk/00001") is None and landmark_file(tmp_path, "/etc/passwd") is None
    assert imported_landmarks("trainval/spk/00001", T, tmp_path).shape == (T, 68, 2)
    with pytest.raises(LandmarkError, match="has 6 frames, the video 7"):
        imported_landmarks("trainval/spk/00001", T + 1, tmp_path)
    with pytest.raises(LandmarkError, match="no landmark file for this clip"):
        imported_landmarks("trainval/spk/00002", T, tmp_path)
    assert imported_landmarks("trainval/spk/00002", T, tmp_path, fallback="detect") is None
    assert imported_landmarks("trainval/spk/00001", T + 1, tmp_path, fallback="detect") is None
    (tmp_path / "none.pkl").write_bytes(pickle.dumps([None] * T))
    with pytest.raises(LandmarkError, match="no face in any"):
        imported_landmarks("none", T, tmp_path)


def test_cli_names_a_missing_landmarks_folder(grid_dir, tmp_path, capsys):
    code = cli_main(["build", "--src", str(grid_dir), "--out", str(tmp_path / "out"), "--flow", "dis",
                     "--landmarks", str(tmp_path / "nowhere"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--landmarks" in err and "no such folder" in err
    with pytest.raises(SystemExit) as exit_:
        cli_main(["build", "--src", str(grid_dir), "--out", str(tmp_path / "o2"), "--shard-bytes", "lots"])
    assert exit_.value.code == 2 and "not a size" in capsys.readouterr().err
