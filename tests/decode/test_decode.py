"""decode_gray on the real GRID clips, on videos written here, and on files it must refuse."""

from __future__ import annotations

import ffmpeg
import numpy as np
import pytest

from flowprep.decode import decode_gray, ffmpeg_binary
from flowprep.errors import ClipError, DecodeError
from tests import media


def smooth_frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Moving smooth blobs: content a codec keeps close to the original."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    centres = rng.uniform(0, 1, (4, 2)) * (w, h)
    out = np.empty((t, h, w), np.uint8)
    for i in range(t):
        img = np.full((h, w), 60.0)
        for k, (cx, cy) in enumerate(centres):
            img += 150 * np.exp(-((xs - cx - 2 * i) ** 2 + (ys - cy - i) ** 2) / (2 * (6 + 3 * k) ** 2))
        out[i] = np.clip(img, 0, 255)
    return out


def test_grid_clips(grid_dir):
    for path in media.grid_clips():
        video = decode_gray(path)
        shape = (media.GRID_FRAMES, media.GRID_HEIGHT, media.GRID_WIDTH)
        assert video.frames.shape == shape and video.frames.dtype == np.uint8, path.name
        assert video.fps == media.GRID_FPS and video.num_frames == media.GRID_FRAMES
        assert 40 < video.frames.mean() < 220 and video.frames.std() > 20  # a picture, not a flat field
        # the speaker moves: consecutive frames differ, though only a little
        step = np.abs(np.diff(video.frames.astype(np.int16), axis=0)).mean(axis=(1, 2))
        assert (step > 0).all() and step.mean() < 10


def test_max_frames_reads_a_prefix(grid_dir):
    path = media.grid_clips()[0]
    full, head = decode_gray(path), decode_gray(path, max_frames=10)
    assert head.num_frames == 10
    np.testing.assert_array_equal(head.frames, full.frames[:10])


@pytest.mark.parametrize(
    "suffix, mean_err", [(".mp4", 1.0), (".mpg", 1.5), (".avi", 1.5), (".mkv", 1.0), (".webm", 1.0)]
)
def test_written_gray_video_round_trips(tmp_path, suffix, mean_err):
    frames = smooth_frames(12, 64, 96)
    media.write_video(tmp_path / f"v{suffix}", frames)
    video = decode_gray(tmp_path / f"v{suffix}")
    assert video.frames.shape == frames.shape and video.fps == 25
    err = np.abs(video.frames.astype(np.int16) - frames)
    assert err.mean() < mean_err and err.max() <= 12, (err.mean(), err.max())


def test_rgb_video_decodes_to_bt601_luma(tmp_path):
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 256, (3, 4, 6, 3)).astype(np.uint8)
    frames = np.repeat(np.repeat(blocks, 16, axis=1), 16, axis=2)  # 16x16 blocks: whole chroma samples
    media.write_video(tmp_path / "rgb.mp4", frames)
    gray = decode_gray(tmp_path / "rgb.mp4").frames.astype(np.float64)
    luma = frames @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray - luma).mean() < 1.5
    assert np.abs(gray - frames.mean(axis=3)).mean() > 5  # it is luma, not the plain channel mean


@pytest.mark.parametrize("fps", [30, 12.5, 30000 / 1001])
def test_frame_rate_is_reported(tmp_path, fps):
    media.write_video(tmp_path / "v.mp4", smooth_frames(8, 32, 32), fps=fps)
    assert decode_gray(tmp_path / "v.mp4").fps == pytest.approx(fps, abs=0.01)


def test_odd_sizes(tmp_path):
    frames = np.random.default_rng(2).integers(0, 256, (5, 45, 67)).astype(np.uint8)
    media.write_video(tmp_path / "odd.mkv", frames, codec="ffv1", pix_fmt="gray")  # lossless
    np.testing.assert_array_equal(decode_gray(tmp_path / "odd.mkv").frames, frames)
    smooth = smooth_frames(5, 45, 67)
    media.write_video(tmp_path / "odd.mp4", smooth, pix_fmt="yuv444p")
    video = decode_gray(tmp_path / "odd.mp4")
    assert video.frames.shape == (5, 45, 67)
    assert np.abs(video.frames.astype(np.int16) - smooth).mean() < 1.0
    with pytest.raises(ValueError, match="even sizes"):
        media.write_video(tmp_path / "bad.mp4", frames)


def test_bad_files_raise_decode_errors_with_reasons(tmp_path):
    expected = media.make_bad_files(tmp_path)
    reasons = {
        "truncated.mp4": "moov atom not found",
        "random_bytes.mp4": "not a video file",
        "empty.mp4": "empty file",
        "text.mp4": "not a video file",
    }
    assert {n for n, stage in expected.items() if stage in ("decode", "discover")} == set(reasons)
    for name, words in reasons.items():
        with pytest.raises(DecodeError, match=words) as info:
            decode_gray(tmp_path / name)
        assert isinstance(info.value, ClipError) and info.value.stage == "decode"
    assert decode_gray(tmp_path / "no_face.mp4").num_frames == 12  # fails later, at the face stage
    with pytest.raises(DecodeError, match="file not found"):
        decode_gray(tmp_path / "missing.mp4")
    with pytest.raises(DecodeError, match="file not found"):
        decode_gray(tmp_path)  # a folder is not a video


def test_audio_only_file(tmp_path):
    path = tmp_path / "speech.mp4"
    ffmpeg.input("sine=frequency=300:duration=1", f="lavfi").output(str(path)).run(cmd=ffmpeg_binary(), quiet=True)
    with pytest.raises(DecodeError, match="no video stream"):
        decode_gray(path)


def test_a_stream_cut_short_is_refused_not_shortened(tmp_path):
    """With the index at the front, a cut file still decodes its first frames: that is a failure."""
    frames = media.face_clip_frames(29, 128)[0]
    whole = tmp_path / "whole.mp4"
    source = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="gray", s="128x128", framerate=25)
    ffmpeg.output(source, str(whole), vcodec="libx264", pix_fmt="yuv420p", movflags="+faststart").run(
        cmd=ffmpeg_binary(), input=frames.tobytes(), quiet=True
    )
    assert decode_gray(whole).num_frames == 29
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DecodeError, match=r"^\d+ of 29 frames decoded"):
        decode_gray(cut)
    assert decode_gray(cut, max_frames=3).num_frames == 3  # a prefix that exists is still readable
