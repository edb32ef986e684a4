"""decode_audio: 16 kHz mono on the video's clock, on clips whose audio and video share a known event,
on the GRID clips, and on files without audio."""

from __future__ import annotations

import numpy as np
import pytest

from flowprep.decode import AudioError, decode_audio, decode_gray
from flowprep.errors import ClipError, DecodeError
from tests import av_media as av
from tests import media

RATE = 16000
EVENT = 23  # the frame where the picture goes bright and the tone starts
FRAMES = 40
PER_FRAME = int(RATE / av.FPS)  # 640 samples per frame at 25 fps
# The onset detector looks at 5 ms windows, and AAC/MP2 smear a sharp onset by a few ms: 10 ms is
# a quarter of a frame. The promise to users is "within one frame"; the codecs do much better.
TOLERANCE = int(0.010 * RATE)


def _decode(path):
    video = decode_gray(path)
    audio = decode_audio(path, rate=RATE, num_frames=video.num_frames, fps=video.fps)
    return video, audio


@pytest.mark.parametrize("suffix", [".mp4", ".mpg", ".mkv"])
def test_tone_starts_on_the_frame_that_goes_bright(tmp_path, suffix):
    frames = av.event_frames(FRAMES, EVENT, size=64, face=False)
    sound = av.tone_burst(FRAMES / av.FPS, EVENT / av.FPS)
    video, audio = _decode(av.write_av_clip(tmp_path / f"clip{suffix}", frames, sound))
    assert audio.rate == RATE and audio.samples.dtype == np.int16
    assert len(audio.samples) == video.num_frames * PER_FRAME == FRAMES * PER_FRAME
    # .mpg: ffmpeg's MPEG-PS muxer starts the mp2 audio 11 ms before the first frame; it is cut off
    assert 0.0 <= audio.start_s < 0.05 and audio.coverage > 0.95
    assert av.brightness_step_frame(video.frames) == EVENT
    onset = av.audio_onset_sample(audio.samples, RATE)
    assert abs(onset - EVENT * PER_FRAME) <= TOLERANCE, f"onset {onset}, frame {EVENT} starts at {EVENT * PER_FRAME}"
    assert onset // PER_FRAME in (EVENT - 1, EVENT)  # floor: a smeared onset may begin just before the frame


def test_streams_that_start_late_stay_aligned(tmp_path):
    """A container whose audio starts 0.2 s after the video (silence is padded in front), and one whose
    video starts 0.2 s after the audio (the audio before the first frame is cut off)."""
    delay = 0.2
    frames = av.event_frames(FRAMES, EVENT, size=64, face=False)
    # audio late: the tone, written at the event's time, sounds `delay` later in the file
    sound = av.tone_burst(FRAMES / av.FPS, EVENT / av.FPS)
    video, audio = _decode(av.write_av_clip(tmp_path / "audio_late.mp4", frames, sound, audio_delay_s=delay))
    onset = av.audio_onset_sample(audio.samples, RATE)
    assert abs(onset - (EVENT / av.FPS + delay) * RATE) <= TOLERANCE
    assert audio.coverage == pytest.approx(1 - delay / (FRAMES / av.FPS), abs=0.03)
    assert np.abs(audio.samples[: int(0.9 * delay * RATE)]).max() == 0  # padded silence, not shifted audio
    # video late: the first frame is at 0.2 s; the tone sits at the bright frame's time in the file
    sound = av.tone_burst(FRAMES / av.FPS + delay, EVENT / av.FPS + delay)
    video, audio = _decode(av.write_av_clip(tmp_path / "video_late.mp4", frames, sound, video_delay_s=delay))
    assert audio.start_s == pytest.approx(delay, abs=0.002)
    assert av.brightness_step_frame(video.frames) == EVENT
    onset = av.audio_onset_sample(audio.samples, RATE)
    assert abs(onset - EVENT * PER_FRAME) <= TOLERANCE


def test_float_output_and_unaligned_length(tmp_path):
    frames = av.event_frames(FRAMES, EVENT, size=64, face=False)
    path = av.write_av_clip(tmp_path / "clip.mkv", frames, av.tone_burst(FRAMES / av.FPS, EVENT / av.FPS))
    as_int = decode_audio(path, rate=RATE, num_frames=FRAMES, fps=av.FPS)
    as_float = decode_audio(path, rate=RATE, num_frames=FRAMES, fps=av.FPS, dtype="float32")
    assert as_float.samples.dtype == np.float32 and np.abs(as_float.samples).max() <= 1.0
    np.testing.assert_allclose(as_float.samples * 32768, as_int.samples, atol=2)
    whole = decode_audio(path, rate=8000)  # no frame count: everything from the first frame on
    assert whole.rate == 8000 and abs(len(whole.samples) - FRAMES / av.FPS * 8000) <= 8000 * 0.05


def test_grid_clips_have_16k_audio_for_every_frame(grid_dir):
    for path in media.grid_clips():  # 75 frames at 25 fps each (tests/decode/test_decode.py checks the video)
        audio = decode_audio(path, rate=RATE, num_frames=media.GRID_FRAMES, fps=media.GRID_FPS)
        assert len(audio.samples) == media.GRID_FRAMES * PER_FRAME, path.name
        assert audio.coverage > 0.95 and audio.start_s == 0.0, path.name
        rms = np.sqrt(np.mean(audio.samples.astype(np.float64) ** 2))
        assert rms > 100, f"{path.name}: speech expected, RMS {rms:.0f}"


def test_file_without_audio_is_an_audio_failure(tmp_path):
    path = av.write_av_clip(tmp_path / "silent.mp4", av.event_frames(12, 5, size=64, face=False), None)
    decode_gray(path)  # the video itself is fine
    with pytest.raises(AudioError) as info:
        decode_audio(path, num_frames=12, fps=av.FPS)
    assert isinstance(info.value, ClipError) and info.value.stage == "audio"
    assert str(info.value) == "no audio stream"


def test_audio_only_file_and_missing_file(tmp_path):
    wav = av.write_wav(tmp_path / "tone.wav", av.tone_burst(1.0, 0.5))
    audio = decode_audio(wav)
    assert audio.start_s == 0.0 and len(audio.samples) == RATE
    assert abs(av.audio_onset_sample(audio.samples, RATE) - RATE // 2) <= TOLERANCE
    with pytest.raises(DecodeError, match="file not found"):
        decode_audio(tmp_path / "nope.mp4")
