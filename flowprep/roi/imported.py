"""Landmarks someone else found: per-clip 68-point files instead of face detection.

Finding landmarks is the slow part of preparing a corpus, and the lipreading recipes publish them
for LRW and LRS3. A build given ``--landmarks DIR`` reads, for each clip, ``DIR/<clip_id>.pkl``
(a list over frames of (68, 2) arrays, None for a frame without a face; a (T, 68, 2) array also
does) or ``DIR/<clip_id>.npz`` (array ``landmarks``, (T, 68, 2), NaN rows for missing frames). The
crop then goes on as for detected landmarks: missing frames interpolated, the track smoothed,
aligned and cut.

A pickle names the functions that rebuild its objects, and unpickling calls them: a file that names
``os.system`` runs a command. Landmark files come from the internet, so they are read by an
unpickler that admits only what such a file holds (numpy's array and dtype reconstruction; lists,
tuples and None need no names) and refuses anything else before calling it. A refused, unreadable
or mismatched file is a ClipError at stage "landmarks": a failure record, or detection as usual
with ``landmarks_fallback="detect"``.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import ClipError, FlowprepError

POINTS = 68
SUFFIXES = (".pkl", ".npz")
MAX_FILE_BYTES = 64 << 20  # 68x2 float64 points over 10 minutes of 25 fps video take 16 MB
try:  # numpy 2
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # numpy 1
    from numpy.core import multiarray as _multiarray, numeric as _numeric  # type: ignore[no-redef]

# The only globals a landmark pickle may name, each with what it stands for: how numpy rebuilds
# arrays, dtypes and scalars (under numpy 1's module names and numpy 2's), and how protocol 2 pickles bytes.
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"numpy.{core}.multiarray", name): getattr(_multiarray, name)
       for core in ("core", "_core") for name in ("_reconstruct", "scalar")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _numeric._frombuffer for core in ("core", "_core")},
    ("_codecs", "encode"): codecs.encode,
}


class LandmarkError(ClipError):
    stage = "landmarks"


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names something a landmark file never holds; it was not looked up, let alone called."""


class LandmarkUnpickler(pickle.Unpickler):
    """Unpickles lists, tuples, None, numbers and numpy arrays; any other global is refused unresolved."""

    def find_class(self, module: str, name: str):
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise RefusedGlobal(f"it names {module}.{name}, which a landmark file never holds")
        return found

    def persistent_load(self, pid):
        raise RefusedGlobal("it refers to outside objects (persistent ids)")


def load_pickle(data: bytes):
    """The object in a landmark pickle, through LandmarkUnpickler."""
    return LandmarkUnpickler(io.BytesIO(data)).load()


def landmark_file(folder: str | Path, clip_id: str) -> Path | None:
    """``folder/<clip_id>.pkl`` or ``.npz``, whichever exists (pkl first); None when neither does."""
    parts = clip_id.split("/")
    if os.path.isabs(clip_id) or ".." in parts:  # ids come from the source tree; never leave the folder
        return None
    for suffix in SUFFIXES:
        path = Path(folder, *parts[:-1], parts[-1] + suffix)
        if path.is_file():
            return path
    return None


def read_landmarks(path: str | Path) -> np.ndarray:
    """float32 (T, 68, 2) from a .pkl or .npz landmark file, NaN for frames without a face."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LandmarkError(f"landmark file {path} is {size >> 20} MiB, more than any clip's points take")
        data = path.read_bytes()
    except OSError as exc:
        raise LandmarkError(f"cannot read landmark file {path}: {exc.strerror}") from None
    if path.suffix == ".npz":
        return _from_npz(data, path)
    try:
        obj = load_pickle(data)
    except RefusedGlobal as exc:
        raise LandmarkError(f"landmark file {path} refused, nothing in it was run: {exc}") from None
    except Exception as exc:  # truncated or garbled: say so, whatever pickle's error
        raise LandmarkError(f"landmark file {path} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    return _as_track(obj, path)


def _from_npz(data: bytes, path: Path) -> np.ndarray:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if "landmarks" not in npz.files:
                raise LandmarkError(f"landmark file {path} has no array 'landmarks' (it has: "
                                    f"{', '.join(npz.files) or 'none'})")
            arr = npz["landmarks"]
    except LandmarkError:
        raise
    except Exception as exc:  # object arrays (allow_pickle=False), a damaged zip
        raise LandmarkError(f"landmark file {path} is not a readable .npz ({type(exc).__name__}: {exc})") from None
    return _as_track(arr, path)


def _as_track(obj, path: Path) -> np.ndarray:
    """A list of (68,2) arrays / None, or a (T,68,2) array, as float32 (T,68,2) with NaN rows."""
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        arr = obj
        if arr.ndim != 3 or arr.shape[1:] != (POINTS, 2) or not np.issubdtype(arr.dtype, np.number):
            raise LandmarkError(f"landmark file {path} holds a {arr.dtype} array of shape {arr.shape}, "
                                f"not (frames, {POINTS}, 2)")
        out = arr.astype(np.float32)
    elif isinstance(obj, (list, tuple)):
        out = np.full((len(obj), POINTS, 2), np.nan, np.float32)
        for t, frame in enumerate(obj):
            if frame is None:
                continue
            points = np.asarray(frame) if isinstance(frame, (np.ndarray, list, tuple)) else None
            if points is None or points.dtype == object or points.shape != (POINTS, 2):
                got = getattr(points, "shape", type(frame).__name__)
                raise LandmarkError(f"landmark file {path}: frame {t} holds {got}, not {POINTS} (x, y) points "
                                    "or None")
            out[t] = points
    else:
        raise LandmarkError(f"landmark file {path} holds a {type(obj).__name__}, not a list over frames of "
                            f"({POINTS}, 2) arrays")
    out[~np.isfinite(out).all(axis=(1, 2))] = np.nan  # a frame with any unknown point counts as missing
    return out


def imported_landmarks(clip_id: str, num_frames: int, folder: str | Path, fallback: str = "fail") -> np.ndarray | None:
    """The clip's landmarks from ``folder``, checked against its decoded frame count. None when the
    clip should be detected instead (``fallback="detect"`` and no usable file); otherwise a problem
    raises LandmarkError, which the build records as the clip's failure."""
    try:
        path = landmark_file(folder, clip_id)
        if path is None:
            raise LandmarkError(f"no landmark file for this clip: expected {Path(folder, clip_id)}.pkl or .npz "
                                "(or build with --landmarks-fallback detect)")
        track = read_landmarks(path)
        if len(track) != num_frames:
            raise LandmarkError(f"landmark file {path} has {len(track)} frames, the video {num_frames}: they belong "
                                "to another cut of the clip")
        if np.isnan(track).all():
            raise LandmarkError(f"landmark file {path} has no face in any of its {len(track)} frames")
        return track
    except LandmarkError:
        if fallback == "detect":
            return None
        raise


def landmarks_folder(folder: str | Path) -> str:
    """``folder`` as an absolute path (workers may run elsewhere), or the error that says what to pass."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FlowprepError(f"--landmarks {folder}: no such folder; give the folder that holds <clip id>.pkl "
                            "or .npz files, laid out like the source tree")
    return os.path.abspath(path)
