"""Mouth crops: centred on the mouth (checked without dlib), steady, honest about missing faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from flowprep.config import RoiConfig
from flowprep.decode import decode_gray
from flowprep.errors import NoFaceError
from flowprep.roi import MouthRoiExtractor, landmark_model_paths
from tests import media

# Read off the photo by eye on a 10 px grid (not by dlib): the lips run from x~230 to x~310, the
# upper lip starts at y~270 and the lower lip ends at y~292 in matplotlib's grace_hopper.jpg.
HAND_LABELLED_MOUTH = np.array([270.0, 281.0])
CENTRE = (112 - 1) / 2


def crop_centre_in_source(affine: np.ndarray) -> np.ndarray:
    """Where the centre of each crop lies in its source frame: [T,2]."""
    out = []
    for m in affine:
        inv = cv2.invertAffineTransform(m.astype(np.float64))
        out.append(inv @ np.array([CENTRE, CENTRE, 1.0]))
    return np.array(out)


@pytest.fixture(scope="module")
def extractor():
    return MouthRoiExtractor(RoiConfig())


def test_models_come_from_the_package():
    predictor, cnn = landmark_model_paths()
    assert predictor.name == "shape_predictor_68_face_landmarks.dat" and predictor.stat().st_size > 90e6
    assert cnn.name == "mmod_human_face_detector.dat"


def test_crop_centre_is_the_hand_labelled_mouth_of_a_moving_photo(extractor):
    frames, offsets = media.face_clip_frames(29, 256, shift_per_frame=(1.2, -0.6))
    result = extractor(frames)
    assert result.gray.shape == (29, 112, 112) and result.gray.dtype == np.uint8
    scale = 256 / media.PHOTO_CROP
    expected = (HAND_LABELLED_MOUTH - np.array(media.PHOTO_FACE_CENTRE)) * scale + 128 + offsets
    error = np.linalg.norm(crop_centre_in_source(result.affine) - expected, axis=1)
    assert error.max() < 4.0, error  # pixels of the 256x256 frame; the mouth is ~55 px wide here
    assert result.qc["detection_rate"] == 1.0 and result.qc["detections_run"] <= 2


def test_crop_centre_is_in_the_mouth_band_of_an_opencv_face_box(grid_dir, extractor):
    """An independent detector (OpenCV's Haar cascade) boxes the face; the crop centre must be in its
    horizontal middle and its lower part, where the mouth is."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    for clip in media.grid_clips():
        frames = decode_gray(clip).frames
        result = extractor(frames)
        centres = crop_centre_in_source(result.affine)
        for t in (0, 37, 74):
            faces = cascade.detectMultiScale(frames[t], scaleFactor=1.1, minNeighbors=5, minSize=(60, 60))
            assert len(faces), f"{clip.name} frame {t}: OpenCV found no face"
            x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
            cx, cy = centres[t]
            assert abs(cx - (x + w / 2)) < 0.12 * w, (clip.name, t, cx, x, w)
            assert y + 0.65 * h < cy < y + 1.0 * h, (clip.name, t, cy, y, h)


def test_grid_clips_are_tracked_not_redetected(grid_dir, extractor):
    for clip in media.grid_clips():
        result = extractor(decode_gray(clip).frames)
        qc = result.qc
        assert result.gray.shape == (75, 112, 112)
        assert qc["detection_rate"] == 1.0 and qc["frames_interpolated"] == 0
        assert qc["detections_run"] <= 3 and qc["frames_tracked"] >= 72
        assert qc["jitter_px"] < 1.5
        # the 20 mouth landmarks average to the crop centre, up to the temporal smoothing
        mouth = result.landmarks[:, 48:68].mean(axis=1)
        assert np.abs(mouth - CENTRE).mean() < 2.0


def test_a_jump_triggers_redetection_and_the_crop_follows(extractor):
    frames, offsets = media.face_clip_frames(20, 256, shift_per_frame=(0.0, 0.0), mouth=False)
    jumped = np.concatenate([frames[:10], np.roll(frames[10:], 70, axis=2)])  # face moves 70 px right
    result = extractor(jumped)
    assert result.qc["detections_run"] >= 2  # once at the start, again after the jump
    x = crop_centre_in_source(result.affine)[:, 0]
    # far from the jump the crop sits on the mouth before and after it (smoothing blurs only the edge)
    assert abs((x[14:] - x[:6].mean()).mean() - 70) < 4


def test_missed_frames_are_interpolated(extractor):
    frames, _ = media.face_clip_frames(24, 256, shift_per_frame=(1.0, 0.0), mouth=False)
    blanked = frames.copy()
    blanked[10:13] = 128  # three frames without a face
    result = extractor(blanked)
    assert result.qc["frames_interpolated"] == 3 and result.qc["detection_rate"] == pytest.approx(21 / 24)
    x = crop_centre_in_source(result.affine)[:, 0]
    reference = crop_centre_in_source(extractor(frames).affine)[:, 0]
    assert np.abs(x - reference).max() < 3.0  # the missing frames follow the motion around them


@pytest.mark.parametrize("kind", ["noise", "flat"])
def test_no_face_is_an_error_not_a_crop(kind, extractor):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 128, 128), dtype=np.uint8) if kind == "noise" else np.full((8, 128, 128), 90,
                                                                                                  np.uint8)
    with pytest.raises(NoFaceError, match="no face found in any of the 8 frames"):
        extractor(frames)
