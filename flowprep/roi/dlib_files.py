"""Where dlib's model files come from: the face-recognition-models package, or a folder you name."""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from ..errors import FlowprepError

LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR_FILE = "mmod_human_face_detector.dat"


def landmark_model_paths() -> tuple[Path, Path]:
    """(68-landmark predictor, CNN face detector) files."""
    folder = os.environ.get("FLOWPREP_DLIB_MODELS")
    if folder:
        base = Path(folder)
        where = f"FLOWPREP_DLIB_MODELS={folder}"
    else:
        # The package's __init__ imports pkg_resources; find its folder without importing it.
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FlowprepError(
                "dlib's landmark model is missing: `pip install face-recognition-models`, or set "
                f"FLOWPREP_DLIB_MODELS to a folder holding {LANDMARKS_FILE} and {CNN_DETECTOR_FILE}"
            )
        base = Path(list(spec.submodule_search_locations)[0]) / "models"
        where = "the face-recognition-models package"
    paths = (base / LANDMARKS_FILE, base / CNN_DETECTOR_FILE)
    for path in paths:
        if not path.is_file():
            raise FlowprepError(f"{path.name} not found in {where} ({base}); reinstall it or point "
                                "FLOWPREP_DLIB_MODELS at a folder with both model files")
    return paths


@lru_cache(maxsize=None)
def load_dlib(detector: str = "hog"):
    """(face detector, shape predictor), loaded once per process."""
    import dlib

    predictor_path, cnn_path = landmark_model_paths()
    predictor = dlib.shape_predictor(str(predictor_path))
    if detector == "hog":
        return dlib.get_frontal_face_detector(), predictor
    if detector == "cnn":
        return dlib.cnn_face_detection_model_v1(str(cnn_path)), predictor
    raise FlowprepError(f"unknown face detector {detector!r}: use hog or cnn")
