"""A video cut short is a DecodeError naming how many frames it gave, for every container the
project reads: MPEG-PS (GRID's .mpg), MP4 with its index at the front or the end, AVI and MKV.

Each case is a real file written by the bundled ffmpeg and cut with plain byte slicing; the
expected counts come from the files themselves (what was written), not from the decoder.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from flowprep.decode import decode_gray
from flowprep.decode.container import avi_video_frames, mpeg_video_frame_rate
from flowprep.errors import DecodeError
from tests import media

FRAMES = 50  # written per synthetic clip: 2 s at 25 fps


@pytest.fixture(scope="module")
def clip_frames() -> np.ndarray:
    return media.face_clip_frames(FRAMES, 128)[0]


@pytest.mark.parametrize("cut, shown", [(20_000, 3), (200_000, 35)])
def test_grid_mpg_cut_short_fails_with_and_without_the_layout(grid_dir, tmp_path, cut, shown):
    """Before: the first 20 KB / 200 KB of a GRID clip decoded as 3 / 35 frames with no error."""
    path = media.cut_file(media.grid_clips()[0], tmp_path / "bbaf2n.mpg", cut)
    with pytest.raises(DecodeError, match=rf"^{shown} of 75 frames decoded: the video stream breaks off \(.*corrupt"):
        decode_gray(path, expected_frames=75)
    # without the layout's 75, ffmpeg's own report of the broken frame still refuses it
    with pytest.raises(DecodeError, match=rf"^{shown} frames decoded: the video stream breaks off"):
        decode_gray(path)
    assert decode_gray(path, max_frames=2).num_frames == 2  # a prefix read on purpose is no failure


def test_whole_grid_clips_pass_the_layout_check(grid_dir):
    for path in media.grid_clips():
        assert decode_gray(path, expected_frames=75).num_frames == 75


def test_the_layout_count_refuses_a_short_but_clean_clip(tmp_path, clip_frames):
    path = media.write_video(tmp_path / "ABOUT_00001.mp4", clip_frames[:20])
    assert decode_gray(path).num_frames == 20  # nothing wrong with the file itself
    with pytest.raises(DecodeError, match=r"^20 of 29 frames decoded, not the frames every clip of this dataset"):
        decode_gray(path, expected_frames=29)


@pytest.mark.parametrize("faststart", [True, False])
def test_mp4_cut_in_half(tmp_path, clip_frames, faststart):
    whole = media.write_mp4(tmp_path / "whole.mp4", clip_frames, faststart=faststart)
    assert decode_gray(whole).num_frames == FRAMES
    cut = media.cut_file(whole, tmp_path / "cut.mp4", 0.5)
    if faststart:  # the index survives: the frames before the cut decode, the header says 50
        with pytest.raises(DecodeError, match=rf"^\d+ of {FRAMES} frames decoded"):
            decode_gray(cut)
    else:  # the index was at the end: nothing can be decoded
        with pytest.raises(DecodeError, match="moov atom not found"):
            decode_gray(cut)


def test_avi_cut_in_half_and_cut_cleanly(tmp_path, clip_frames):
    whole = media.write_video(tmp_path / "whole.avi", clip_frames)
    assert avi_video_frames(whole) == FRAMES and decode_gray(whole).num_frames == FRAMES
    half = media.cut_file(whole, tmp_path / "half.avi", 0.5)
    assert avi_video_frames(half) == FRAMES  # the header is at the front: it survives the cut
    with pytest.raises(DecodeError, match=rf"^\d+ of {FRAMES} frames decoded: the video stream breaks off"):
        decode_gray(half)
    # cut between two frames: no broken packet to report, only the header's count tells
    clean = media.avi_cut_before_frame(whole, tmp_path / "clean.avi", 30)
    with pytest.raises(DecodeError, match=rf"^30 of {FRAMES} frames decoded, not as many as the container declares"):
        decode_gray(clean)


def test_mkv_cut_in_half(tmp_path, clip_frames):
    whole = media.write_video(tmp_path / "whole.mkv", clip_frames)
    assert decode_gray(whole).num_frames == FRAMES
    cut = media.cut_file(whole, tmp_path / "cut.mkv", 0.5)
    with pytest.raises(DecodeError, match=rf"^\d+ of {FRAMES} frames decoded"):
        decode_gray(cut)


def test_a_one_frame_clip_reads_its_stream_frame_rate(grid_dir, tmp_path):
    """Before: fps 50, ffmpeg's tbr guess for a one-frame MPEG-PS stream; the stream says 25."""
    one = media.one_frame_mpg(media.grid_clips()[0], tmp_path / "one.mpg")
    assert mpeg_video_frame_rate(one) == 25.0
    video = decode_gray(one)
    assert video.num_frames == 1 and video.fps == 25.0
    with pytest.raises(DecodeError, match=r"^1 of 75 frames decoded"):
        decode_gray(one, expected_frames=75)


def test_headers_of_other_files_are_not_misread(tmp_path, clip_frames):
    mp4 = media.write_video(tmp_path / "v.mp4", clip_frames[:5])
    assert avi_video_frames(mp4) is None and mpeg_video_frame_rate(mp4) is None
    (tmp_path / "junk.avi").write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST")  # a header cut inside
    assert avi_video_frames(tmp_path / "junk.avi") is None


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.mp4")  # opening it for reading would block until a writer comes
    with pytest.raises(DecodeError, match="not a regular file .*left unopened"):
        decode_gray(tmp_path / "pipe.mp4")
