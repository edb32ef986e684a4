"""The shared test media (tests/media.py) are what every other test trusts: check they are what they claim."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from flowprep.decode import decode_gray
from flowprep.sources.lrw import parse_boundary
from tests import media


@pytest.fixture(scope="module")
def hog():
    import dlib

    return dlib.get_frontal_face_detector()


def test_grid_folder_follows_the_environment(tmp_path):
    (tmp_path / "bbaf2n.mpg").touch()
    (tmp_path / "notes.txt").touch()
    code = "from tests import media; print(media.GRID_DIR); print([p.name for p in media.grid_clips()])"
    env = dict(os.environ, FLOWPREP_TEST_DATA=str(tmp_path))
    root = Path(media.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == [str(tmp_path), "['bbaf2n.mpg']"]
    env[media.DATA_ENV] = str(tmp_path / "absent")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[1] == "[]"


def test_default_grid_folder_is_beside_the_repo():
    if os.environ.get(media.DATA_ENV):
        pytest.skip(f"{media.DATA_ENV} is set")
    assert media.GRID_DIR == Path(media.__file__).resolve().parents[2] / "shared" / "data" / "grid"


def test_grace_hopper(face_image):
    assert face_image.shape == (600, 512) and face_image.dtype == np.uint8
    face_image[:] = 0
    assert media.grace_hopper().std() > 30  # callers get copies


def test_photo_constants_match_dlib(hog, face_image):
    (box,) = hog(face_image, 0)
    centre = ((box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2)
    assert np.allclose(centre, media.PHOTO_FACE_CENTRE, atol=6)


def test_write_video_rejects_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        media.write_video(tmp_path / "a.mp4", np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        media.write_video(tmp_path / "a.mp4", np.zeros((2, 8, 8, 4), np.uint8))


def test_face_clip_moves_by_the_returned_offsets(tmp_path, hog):
    offsets = media.make_face_clip(tmp_path / "face.mp4", frames=13, size=256, shift_per_frame=(1.5, -0.75))
    frames = decode_gray(tmp_path / "face.mp4").frames
    assert frames.shape == (13, 256, 256) and offsets.shape == (13, 2)
    np.testing.assert_allclose(offsets[6], (0, 0))  # the middle frame is centred
    np.testing.assert_allclose(offsets[-1] - offsets[0], (12 * 1.5, -12 * 0.75))
    # global motion from the upper face (the mouth moves on its own): phase correlation of frames
    window = cv2.createHanningWindow((128, 96), cv2.CV_64F)
    for t in (1, 6, 12):
        a, b = (f[40:136, 64:192].astype(np.float64) for f in (frames[0], frames[t]))
        (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
        np.testing.assert_allclose((dx, dy), offsets[t] - offsets[0], atol=0.35)
    for t in (0, 12):
        (box,) = hog(frames[t], 0)
        centre = np.array([(box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2])
        np.testing.assert_allclose(centre, 128 + offsets[t], atol=8)
        assert 110 < box.width() < 180


def test_only_the_mouth_moves_without_translation():
    frames, offsets = media.face_clip_frames(frames=5, size=256, shift_per_frame=(0, 0))
    assert not offsets.any()
    diff = np.abs(frames[4].astype(np.int16) - frames[0])  # frame 4: mouth wide open, frame 0: closed
    scale = 256 / media.PHOTO_CROP
    mx = int(128 + scale * (media.PHOTO_MOUTH_CENTRE[0] - media.PHOTO_FACE_CENTRE[0]))
    my = int(128 + scale * (media.PHOTO_MOUTH_CENTRE[1] - media.PHOTO_FACE_CENTRE[1]))
    mouth = np.zeros_like(diff, bool)
    mouth[my - 25 : my + 26, mx - 42 : mx + 43] = True
    assert diff[~mouth].max() == 0
    assert diff[mouth].mean() > 3


def test_lrw_tree_from_photo(tmp_path, hog):
    videos = media.make_lrw_tree_from_photo(tmp_path, words=("ABOUT", "ZERO"), per_split={"train": 1, "val": 1})
    assert [v.relative_to(tmp_path).as_posix() for v in videos] == [
        "ABOUT/train/ABOUT_00001.mp4", "ABOUT/val/ABOUT_00001.mp4",
        "ZERO/train/ZERO_00001.mp4", "ZERO/val/ZERO_00001.mp4",
    ]
    for k, video in enumerate(videos):
        frames = decode_gray(video).frames
        assert frames.shape == (29, 256, 256)
        assert len(hog(frames[14], 0)) == 1
        text = video.with_suffix(".txt").read_text()
        assert text.startswith(f"Text:  {video.parent.parent.name}\nConf:  ")
        assert parse_boundary(text)[1] - parse_boundary(text)[0] == pytest.approx(media.lrw_duration(k), abs=1e-6)
    first, second = (decode_gray(v).frames for v in videos[:2])
    assert np.abs(first.astype(np.int16) - second).mean() > 2  # clips drift their own ways


def test_lrw_tree_from_grid_is_the_central_square(tmp_path, grid_dir, hog):
    clips = media.grid_clips()[:2]
    videos = media.make_lrw_tree(tmp_path, clips=clips, words=("ABOUT",), per_split={"train": 3})
    assert len(videos) == 3
    for k, video in enumerate(videos):
        source = decode_gray(clips[k % 2]).frames
        start = (7 * k) % (75 - 29 + 1)
        want = np.stack([cv2.resize(f[:, 36:324], (256, 256), interpolation=cv2.INTER_AREA)
                         for f in source[start : start + 29]])
        got = decode_gray(video).frames
        assert got.shape == (29, 256, 256)
        assert np.abs(got.astype(np.int16) - want).mean() < 1.5
        (box,) = hog(got[14], 0)
        assert 70 < box.width() < 200  # a real face, not squashed out of the detector's reach


def test_session_lrw_tree(lrw_tree):
    videos = sorted(lrw_tree.rglob("*.mp4"))
    assert len(videos) == len(media.LRW_WORDS) * sum(media.LRW_PER_SPLIT.values())
    assert all(v.with_suffix(".txt").is_file() for v in videos)
    assert decode_gray(videos[0]).frames.shape == (29, 256, 256)
