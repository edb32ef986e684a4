"""The in-process decoder (ffmpeg's libraries through PyAV) against the ffmpeg program, the reference:
the same frames bit for bit, the same fps, the same failures with the same counts, the same audio.

Every file is real: the GRID clips (MPEG-PS), and MP4 (H.264, index at the front and at the end),
AVI (MPEG-4 part 2), MKV and WebM written by the bundled ffmpeg, then cut with byte slicing.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowprep.decode import ffmpeg as program
from flowprep.decode import inprocess
from flowprep.errors import DecodeError
from tests import av_media, media

FRAMES = 30


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    """name -> path: one video per container and codec the project reads, whole and cut short."""
    root = tmp_path_factory.mktemp("containers")
    face = media.face_clip_frames(FRAMES, 128)[0]
    out = {
        "h264.mp4": media.write_mp4(root / "h264.mp4", face, faststart=False),
        "h264_front.mp4": media.write_mp4(root / "h264_front.mp4", face, faststart=True),
        "mpeg4.avi": media.write_video(root / "mpeg4.avi", face),
        "h264.mkv": media.write_video(root / "h264.mkv", face),
        "vp9.webm": media.write_video(root / "vp9.webm", face[:8]),
        "mpeg1.mpg": media.write_video(root / "mpeg1.mpg", face),
        "odd_yuv444.mp4": media.write_video(root / "odd_yuv444.mp4", face[:5, :45, :67].copy(), pix_fmt="yuv444p"),
        # full-range luma (the conversion table differs) and 10-bit luma (converted by the scaler itself)
        "full_range.mp4": media.write_video(root / "full_range.mp4", face[:5], pix_fmt="yuvj420p"),
        "10bit.mkv": media.write_video(root / "10bit.mkv", face[:5], pix_fmt="yuv420p10le"),
    }
    rgb = np.random.default_rng(1).integers(0, 256, (3, 4, 6, 3)).astype(np.uint8)
    out["rgb.mp4"] = media.write_video(root / "rgb.mp4", np.repeat(np.repeat(rgb, 16, axis=1), 16, axis=2))
    for name in ("h264_front.mp4", "mpeg4.avi", "h264.mkv", "h264.mp4"):
        out[f"half_{name}"] = media.cut_file(out[name], root / f"half_{name}", 0.5)
    out["clean_cut.avi"] = media.avi_cut_before_frame(out["mpeg4.avi"], root / "clean_cut.avi", 20)
    return out


def _both(path, **kwargs):
    """(ffmpeg program's result, in-process result): a DecodedVideo or the DecodeError's text."""
    results = []
    for decoder in (program, inprocess):
        try:
            results.append(decoder.decode_gray(path, **kwargs))
        except DecodeError as exc:
            results.append(str(exc))
    return results


def test_grid_clips_decode_to_the_same_frames(grid_dir):
    for path in media.grid_clips():  # MPEG-PS, MPEG-1 video, 360x288
        old, new = _both(path, expected_frames=media.GRID_FRAMES)
        assert new.frames.shape == (media.GRID_FRAMES, media.GRID_HEIGHT, media.GRID_WIDTH), path.name
        np.testing.assert_array_equal(new.frames, old.frames, err_msg=path.name)
        assert new.fps == old.fps == media.GRID_FPS


@pytest.mark.parametrize(
    "name",
    ["h264.mp4", "h264_front.mp4", "mpeg4.avi", "h264.mkv", "vp9.webm", "mpeg1.mpg", "odd_yuv444.mp4", "rgb.mp4",
     "full_range.mp4", "10bit.mkv"],
)
def test_written_videos_decode_to_the_same_frames(videos, name):
    old, new = _both(videos[name])
    assert not isinstance(new, str), new
    assert new.frames.dtype == np.uint8 and new.frames.shape == old.frames.shape
    np.testing.assert_array_equal(new.frames, old.frames)
    assert new.fps == old.fps == 25.0
    head = inprocess.decode_gray(videos[name], max_frames=3)
    np.testing.assert_array_equal(head.frames, old.frames[:3])


def test_lrw_shaped_clip_decodes_to_the_same_frames(grid_dir, tmp_path):
    """256x256 H.264, 29 frames: the clips a full LRW build decodes 538,766 times."""
    source = program.decode_gray(media.grid_clips()[1]).frames
    path = media.write_video(tmp_path / "ABOUT_00001.mp4", media.grid_to_lrw_frames(source, 20))
    old, new = _both(path, expected_frames=media.LRW_FRAMES)
    np.testing.assert_array_equal(new.frames, old.frames)
    assert new.frames.shape == (29, 256, 256)


@pytest.mark.parametrize("name", ["half_h264_front.mp4", "half_mpeg4.avi", "half_h264.mkv", "clean_cut.avi"])
def test_cut_videos_fail_with_the_same_counts(videos, name):
    old, new = _both(videos[name])
    assert isinstance(old, str) and isinstance(new, str), (old, new)
    count = old.split(":")[0].split(",")[0]  # "14 of 30 frames decoded"
    assert new.startswith(count) and f"of {FRAMES} frames decoded" in new, (old, new)


def test_cut_grid_clips_fail_with_the_same_counts(grid_dir, tmp_path):
    for cut, shown in ((20_000, 3), (200_000, 35)):
        path = media.cut_file(media.grid_clips()[0], tmp_path / f"cut{cut}.mpg", cut)
        old, new = _both(path, expected_frames=75)
        assert old.startswith(f"{shown} of 75 frames decoded: the video stream breaks off"), old
        assert new.startswith(f"{shown} of 75 frames decoded: the video stream breaks off"), new
        assert "corrupt" in new.lower()


def test_files_that_are_no_video_fail_with_the_same_reason(videos, tmp_path):
    expected = media.make_bad_files(tmp_path)
    names = [n for n, stage in expected.items() if stage in ("decode", "discover")] + ["half_h264.mp4"]
    for name in names:
        path = videos[name] if name in videos else tmp_path / name
        old, new = _both(path)
        assert isinstance(new, str) and new == old, (name, old, new)


def test_fractional_frame_rates_agree(tmp_path):
    """The ffmpeg program prints the rate with two decimals; the libraries give the exact fraction."""
    path = media.write_video(tmp_path / "ntsc.mp4", media.face_clip_frames(8, 64)[0], fps=30000 / 1001)
    old, new = _both(path)
    np.testing.assert_array_equal(new.frames, old.frames)
    assert new.fps == pytest.approx(30000 / 1001, abs=1e-9) and old.fps == pytest.approx(new.fps, abs=0.01)


@pytest.mark.parametrize("suffix, delay", [(".mp4", {}), (".mpg", {}), (".mkv", {}),
                                           (".mp4", {"audio_delay_s": 0.2}), (".mp4", {"video_delay_s": 0.2})])
def test_audio_on_the_video_clock_is_the_same(tmp_path, suffix, delay):
    frames = av_media.event_frames(40, 23, size=64, face=False)
    onset = 23 / av_media.FPS + delay.get("video_delay_s", 0.0)
    sound = av_media.tone_burst(40 / av_media.FPS + delay.get("video_delay_s", 0.0), onset)
    path = av_media.write_av_clip(tmp_path / f"clip{suffix}", frames, sound, **delay)
    for dtype in ("int16", "float32"):
        old = program.decode_audio(path, 16000, num_frames=40, fps=25.0, dtype=dtype)
        new = inprocess.decode_audio(path, 16000, num_frames=40, fps=25.0, dtype=dtype)
        assert new.samples.dtype == old.samples.dtype and len(new.samples) == 40 * 640
        np.testing.assert_array_equal(new.samples, old.samples)
        # showinfo prints the first frame's time with 6 decimals; the libraries give it exactly
        assert (new.start_s, new.coverage) == pytest.approx((old.start_s, old.coverage), abs=1e-6)
    # everything from the first frame on: the same samples; the two may end a few samples of
    # encoder padding (silence, under one AAC frame of 1024 source samples) apart
    old, new = program.decode_audio(path, 8000), inprocess.decode_audio(path, 8000)
    common = min(len(old.samples), len(new.samples))
    assert common > 0.9 * 1.6 * 8000
    np.testing.assert_array_equal(new.samples[:common], old.samples[:common])
    tail = np.concatenate([old.samples[common:], new.samples[common:]])
    assert len(tail) < 1024 * 8000 / av_media.SOURCE_RATE and not tail.any()


def test_grid_audio_is_the_same(grid_dir):
    for path in media.grid_clips()[:3]:
        old = program.decode_audio(path, 16000, num_frames=75, fps=25.0)
        new = inprocess.decode_audio(path, 16000, num_frames=75, fps=25.0)
        np.testing.assert_array_equal(new.samples, old.samples, err_msg=path.name)
        assert new.start_s == old.start_s == 0.0 and new.coverage == old.coverage


def test_audio_failures_match(tmp_path, videos):
    for path in (videos["h264.mp4"], media.make_bad_files(tmp_path) and tmp_path / "text.mp4"):
        messages = []
        for decoder in (program, inprocess):
            with pytest.raises(program.AudioError) as info:
                decoder.decode_audio(path)
            messages.append(str(info.value))
        assert messages[0] == messages[1], messages


def test_flowprep_ffmpeg_selects_the_program(monkeypatch, videos):
    """$FLOWPREP_FFMPEG names the ffmpeg program to decode with: then every clip goes through it."""
    from flowprep import decode
    from flowprep.errors import FlowprepError

    assert decode.decoder_name() == "in-process"
    monkeypatch.setenv("FLOWPREP_FFMPEG", "no-such-ffmpeg-here")
    program.ffmpeg_binary.cache_clear()
    try:
        assert decode.decoder_name() == "ffmpeg-program"
        with pytest.raises(FlowprepError, match="FLOWPREP_FFMPEG='no-such-ffmpeg-here' is not an executable"):
            decode.decode_gray(videos["h264.mp4"])
        monkeypatch.delenv("FLOWPREP_FFMPEG")
        program.ffmpeg_binary.cache_clear()
        assert decode.decode_gray(videos["h264.mp4"]).num_frames == FRAMES  # the libraries again
    finally:
        program.ffmpeg_binary.cache_clear()


def test_threads_decoding_at_once_each_keep_their_evidence(videos):
    """The libraries' log level is process-wide: one thread's decode ending must not silence another's
    (a cut MKV is known only from the demuxer's "File ended prematurely")."""
    from concurrent.futures import ThreadPoolExecutor

    def outcome(name):
        try:
            return inprocess.decode_gray(videos[name]).num_frames
        except DecodeError as exc:
            return str(exc)

    # one after another first: PyAV skips a log line equal to the last one unless told not to
    assert all("File ended prematurely" in outcome("half_h264.mkv") for _ in range(2))
    names = ["half_h264.mkv", "h264.mp4", "mpeg4.avi", "half_h264.mkv"] * 4
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(outcome, names))
    for name, result in zip(names, results):
        if name.startswith("half_"):
            assert isinstance(result, str) and "File ended prematurely" in result, result
        else:
            assert result == FRAMES
