"""Test clips with sound: video and audio that share a known event, written with the bundled ffmpeg.

The visual event is a step in brightness at a known frame; the audio event is a tone burst that
starts at the same instant. After decoding (or a build) both must land on the same frame.
"""

from __future__ import annotations

import wave
from pathlib import Path

import ffmpeg
import numpy as np

from flowprep.decode import ffmpeg_binary
from tests import media

FPS = 25.0
SOURCE_RATE = 44100  # the rate the audio is written at: the decoder resamples it to 16 kHz
# (video codec, audio codec) per container, the way LRW (.mp4, aac) and GRID (.mpg, mp2) come
CODECS = {".mp4": ("libx264", "aac"), ".mpg": ("mpeg1video", "mp2"), ".mkv": ("libx264", "pcm_s16le")}


def event_frames(frames: int = 40, event: int = 23, size: int = 256, face: bool = True) -> np.ndarray:
    """uint8 [T,size,size]: the talking-face photo clip (or a flat gray field), 60 levels brighter
    from frame ``event`` on."""
    if face:
        pixels = media.face_clip_frames(frames, size, shift_per_frame=(0.3, 0.2))[0]
    else:
        pixels = np.full((frames, size, size), 90, np.uint8)
    out = pixels.astype(np.int16)
    out[event:] += 60
    return np.clip(out, 0, 255).astype(np.uint8)


def tone_burst(seconds: float, onset_s: float, rate: int = SOURCE_RATE, burst_s: float = 0.3,
               freq: float = 1000.0, amplitude: float = 0.5) -> np.ndarray:
    """float32 [S] in -1..1: silence, then a ``freq`` Hz burst from ``onset_s`` for ``burst_s``."""
    t = np.arange(int(round(seconds * rate))) / rate
    on = (t >= onset_s) & (t < onset_s + burst_s)
    return (amplitude * np.sin(2 * np.pi * freq * t) * on).astype(np.float32)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SOURCE_RATE) -> Path:
    path = Path(path)
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def write_av_clip(
    path: str | Path,
    frames: np.ndarray,
    audio: np.ndarray | None,
    fps: float = FPS,
    rate: int = SOURCE_RATE,
    audio_delay_s: float = 0.0,
    video_delay_s: float = 0.0,
) -> Path:
    """A real video file of gray ``frames`` with the mono ``audio`` track (None: no audio stream).

    ``audio_delay_s`` / ``video_delay_s`` shift that stream's timestamps in the container (ffmpeg's
    -itsoffset), the way real files start one stream after the other."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vcodec, acodec = CODECS.get(path.suffix.lower(), ("libx264", "aac"))
    if audio is None:
        return media.write_video(path, frames, fps=fps, codec=vcodec)
    wav = write_wav(path.with_suffix(".src.wav"), audio, rate)
    _, height, width = frames.shape
    delayed = bool(audio_delay_s or video_delay_s)
    target = path.with_suffix(".base" + path.suffix) if delayed else path
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="gray", s=f"{width}x{height}", framerate=fps)
    quality = {"libx264": {"crf": 12, "preset": "veryfast"}, "mpeg1video": {"q:v": 2}}[vcodec]
    out = ffmpeg.output(video, ffmpeg.input(str(wav)), str(target), vcodec=vcodec, pix_fmt="yuv420p", r=fps,
                        acodec=acodec, **quality)
    try:
        _run(out, input=np.ascontiguousarray(frames).tobytes())
        if delayed:  # shift one stream's timestamps without re-encoding (an encoder would fill the gap)
            v = ffmpeg.input(str(target), itsoffset=video_delay_s)["v:0"]
            a = ffmpeg.input(str(target), itsoffset=audio_delay_s)["a:0"]
            _run(ffmpeg.output(v, a, str(path), c="copy"))
    finally:
        wav.unlink()
        if delayed and target.exists():
            target.unlink()
    return path


def _run(out, input: bytes | None = None) -> None:
    try:
        out.overwrite_output().global_args("-hide_banner", "-loglevel", "error").run(
            cmd=ffmpeg_binary(), input=input, capture_stdout=True, capture_stderr=True
        )
    except ffmpeg.Error as exc:
        raise RuntimeError(f"ffmpeg could not write a clip: {exc.stderr.decode(errors='replace')[-500:]}") from None


def audio_onset_sample(samples: np.ndarray, rate: int, window_s: float = 0.005, share: float = 0.3) -> int:
    """First sample of the first ``window_s`` window whose RMS reaches ``share`` of the loudest window's."""
    x = samples.astype(np.float64)
    win = max(1, int(round(window_s * rate)))
    n = len(x) // win
    rms = np.sqrt(np.square(x[: n * win]).reshape(n, win).mean(axis=1))
    if rms.max() <= 0:
        raise AssertionError("the audio is silent: no onset")
    return int(np.flatnonzero(rms >= share * rms.max())[0]) * win


def brightness_step_frame(gray: np.ndarray) -> int:
    """The frame where the mean brightness jumps the most (the first frame after the step)."""
    means = np.asarray(gray, np.float64).reshape(len(gray), -1).mean(axis=1)
    return int(np.argmax(np.diff(means))) + 1
