"""Decode a video to grayscale frames, and its audio to 16 kHz mono, with ffmpeg (through ffmpeg-python).

The binary is the one named by ``$FLOWPREP_FFMPEG`` or, by default, the static build that
imageio-ffmpeg ships, so every machine decodes with the same ffmpeg. No ffprobe is needed:
frames come out as a PGM stream whose headers carry the size, and the frame rate is read
from ffmpeg's own report of the input stream.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ffmpeg
import numpy as np

from ..errors import ClipError, DecodeError, FlowprepError

_FPS = re.compile(r"Video:.*?(\d+(?:\.\d+)?) (?:fps|tbr)")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_PGM_HEADER = re.compile(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s")
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*@ 0x[0-9a-f]+\]\s*)+")  # "[h264 @ 0x55…] "
_ERROR_WORDS = re.compile(r"error|invalid|corrupt|not found|unsupported|partial", re.IGNORECASE)
# ffmpeg's words for a cause, in the order they explain best; the summary lines it prints last
# ("Error opening input files: …", "Conversion failed!") name no cause.
_KNOWN_CAUSES = (
    ("matches no streams", "no video stream in the file"),
    ("misdetection possible", "not a video file: ffmpeg does not recognise its format"),
    ("moov atom not found", "moov atom not found: truncated, or not an MP4/MOV file"),
    ("partial file", "the file is truncated (partial file)"),
    ("error reading header", "cannot read the container header: truncated or corrupt file"),
    ("Invalid data found when processing input", "not a readable video: invalid data"),
)
# Fewer decoded frames than this share of duration x fps means the stream stopped early.
_MIN_FRAME_SHARE = 0.9


@dataclass
class DecodedVideo:
    frames: np.ndarray  # uint8 [T, H, W]
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


class AudioError(ClipError):
    """The clip's audio cannot be used (no audio stream, nothing decodable): a per-clip failure."""

    stage = "audio"


@dataclass
class DecodedAudio:
    """Audio on the video's clock: ``samples[0]`` is the start of the first video frame.

    Frame i of the video (at ``fps``) covers samples ``[i*rate/fps, (i+1)*rate/fps)``. ``start_s`` is
    where that first frame sits on the file's timeline (ffmpeg's, starting at 0), ``coverage`` the
    share of the returned samples the audio stream really holds (the rest is zero padding: audio
    that starts late or ends early).
    """

    samples: np.ndarray  # int16 [S] (or float32 in -1..1 with dtype="float32"), mono
    rate: int
    start_s: float
    coverage: float

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


@lru_cache(maxsize=None)
def ffmpeg_binary() -> str:
    """Path of the ffmpeg executable used for all decoding."""
    configured = os.environ.get("FLOWPREP_FFMPEG")
    if configured:
        found = shutil.which(configured)
        if not found:
            raise FlowprepError(f"FLOWPREP_FFMPEG={configured!r} is not an executable; unset it to use imageio-ffmpeg's")
        return found
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise FlowprepError("no ffmpeg: install imageio-ffmpeg or set FLOWPREP_FFMPEG=/path/to/ffmpeg") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def decode_gray(path: str | Path, max_frames: int | None = None) -> DecodedVideo:
    """Decode every frame of ``path`` to 8-bit grayscale at the source frame rate.

    Raises DecodeError (a per-clip failure, never a crash) for a missing, empty, corrupt or
    non-video file.
    """
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    stream = ffmpeg.input(str(path))["v:0"]  # the first video stream only (not cover art)
    out_args = {"format": "image2pipe", "vcodec": "pgm", "pix_fmt": "gray", "fps_mode": "passthrough"}
    if max_frames is not None:
        out_args["frames:v"] = max_frames
    try:
        raw, err = (
            ffmpeg.output(stream, "pipe:", **out_args)
            .global_args("-nostdin", "-hide_banner", "-loglevel", "info")
            .run(cmd=ffmpeg_binary(), capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as exc:
        raise DecodeError(_failure_reason(exc.stderr) or "ffmpeg could not decode the file") from None
    frames = _parse_pgm_stream(raw)
    log = err.decode(errors="replace")
    if frames.shape[0] == 0:
        raise DecodeError(_failure_reason(err) or "no video frames decoded")
    match = _FPS.search(log)
    fps = float(match.group(1)) if match else 25.0
    # A stream cut short (lost packets, a file cut after its index) still exits 0 with the frames
    # before the damage: a clip that silently lost frames is worse than a recorded failure.
    expected = _duration_s(log) * fps
    if max_frames is None and frames.shape[0] < _MIN_FRAME_SHARE * expected - 1:
        cause = _failure_reason(err) or "stream ends early"
        raise DecodeError(f"only {frames.shape[0]} of about {expected:.0f} frames decoded: {cause}")
    return DecodedVideo(frames=frames, fps=fps)


# showinfo's line for the first frame; "pts_time" is on ffmpeg's timeline (the input's start subtracted)
_FIRST_VIDEO_PTS = re.compile(r"\bn:\s*0\s+pts:\s*-?\d+\s+pts_time:\s*(-?[0-9.]+(?:e-?\d+)?)")
_AUDIO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Audio:")
_VIDEO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video:")


def decode_audio(
    path: str | Path,
    rate: int = 16000,
    num_frames: int | None = None,
    fps: float | None = None,
    dtype: str = "int16",
) -> DecodedAudio:
    """The audio of ``path`` as mono PCM at ``rate`` Hz, aligned to its first video frame.

    One ffmpeg run with two outputs: the first video frame through ``showinfo`` (its time on the
    file's timeline) and the first audio stream, resampled and downmixed, as s16le (or f32le) on a
    pipe. ``aresample=async=1:first_pts=0`` puts audio sample 0 at timeline 0 (silence where the
    audio starts late, gaps filled), so the samples of frame 0 start at round(start_s * rate); they
    are cut from there. With ``num_frames`` and ``fps`` (what decode_gray returned) the result holds
    exactly round(num_frames * rate / fps) samples, zero-padded where the audio stream ends early;
    without, everything from the first frame on. A file without video is taken from timeline 0.

    Raises AudioError (stage "audio") for a file without an audio stream or with no decodable audio.
    """
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"file not found: {path}")
    if dtype not in ("int16", "float32"):
        raise ValueError(f"dtype {dtype!r}: use int16 or float32")
    fmt, codec = ("s16le", "pcm_s16le") if dtype == "int16" else ("f32le", "pcm_f32le")
    src = ffmpeg.input(str(path))
    audio = (
        src["a:0"]
        .filter("aresample", rate, **{"async": 1, "first_pts": 0})
        .output("pipe:", format=fmt, acodec=codec, ac=1, ar=rate)
    )
    probe = src["v:0"].filter("showinfo").output("-", format="null", **{"frames:v": 1})
    probed = True
    try:
        raw, err = _run(ffmpeg.merge_outputs(probe, audio))
    except ffmpeg.Error as exc:
        log = (exc.stderr or b"").decode(errors="replace")
        if "Duration:" in log and not _AUDIO_STREAM.search(log):
            raise AudioError("no audio stream") from None
        if "Duration:" not in log or _VIDEO_STREAM.search(log):
            raise AudioError(_failure_reason(exc.stderr) or "ffmpeg could not decode the audio") from None
        probed = False
        try:  # an audio-only file: no first frame to align to, timeline 0 it is
            raw, err = _run(audio)
        except ffmpeg.Error as exc2:
            raise AudioError(_failure_reason(exc2.stderr) or "ffmpeg could not decode the audio") from None
    log = err.decode(errors="replace")
    samples = np.frombuffer(raw, np.int16 if dtype == "int16" else np.float32)
    if samples.size == 0:
        raise AudioError("the audio stream holds no decodable samples")
    match = _FIRST_VIDEO_PTS.search(log)
    if probed and match is None:  # never guess an alignment
        raise AudioError("ffmpeg did not report the first video frame's time (showinfo); cannot align the audio")
    start_s = float(match.group(1)) if match else 0.0
    first = int(round(start_s * rate))  # the sample of ffmpeg's output where frame 0 starts
    if num_frames is not None:
        if not fps or fps <= 0:
            raise ValueError("num_frames needs the video's fps")
        want = int(round(num_frames * rate / fps))
    else:
        want = max(0, len(samples) - first)
    out = np.zeros(want, samples.dtype)
    lo, hi = max(first, 0), min(first + want, len(samples))
    if hi > lo:
        out[lo - first:hi - first] = samples[lo:hi]
    # the part of that window the audio stream really holds: after the silence ffmpeg put before the
    # stream's own start (first_pts=0), before its end
    real = max(0, hi - max(lo, _leading_pad(log, rate)))
    coverage = real / want if want else 0.0
    if want and real == 0:
        raise AudioError("the audio stream holds no samples during the video")
    return DecodedAudio(samples=out, rate=rate, start_s=start_s, coverage=float(coverage))


def _run(cmd) -> tuple[bytes, bytes]:
    return cmd.global_args("-nostdin", "-hide_banner", "-loglevel", "info").run(
        cmd=ffmpeg_binary(), capture_stdout=True, capture_stderr=True
    )


def _leading_pad(log: str, rate: int) -> int:
    """Samples of silence ffmpeg put before the audio stream's own start (its start minus the file's)."""
    match = re.search(r"Audio:[^\n]*?, start (-?[0-9.]+)", log)
    if match is None:  # ffmpeg names a stream's start only where it differs from the file's
        return 0
    file_start = re.search(r"Duration: [^\n]*?start: (-?[0-9.]+)", log)
    return max(0, int(round((float(match.group(1)) - (float(file_start.group(1)) if file_start else 0.0)) * rate)))


def _parse_pgm_stream(raw: bytes) -> np.ndarray:
    header = _PGM_HEADER.match(raw)
    if header is None:
        return np.zeros((0, 0, 0), np.uint8)
    width, height, maxval = (int(g) for g in header.groups())
    if maxval > 255:
        raise DecodeError(f"unexpected {maxval}-level grayscale output")
    # Every frame has the same size, hence the same header: one reshape covers the stream.
    frame_bytes = header.end() + width * height
    count = len(raw) // frame_bytes
    if count == 0:
        return np.zeros((0, height, width), np.uint8)
    if len(raw) != count * frame_bytes or raw[(count - 1) * frame_bytes:][: header.end()] != raw[: header.end()]:
        raise DecodeError("the frame size changes inside the video; re-encode it at one size")
    block = np.frombuffer(raw, np.uint8, count=count * frame_bytes).reshape(count, frame_bytes)
    return np.ascontiguousarray(block[:, header.end():]).reshape(count, height, width)


def _duration_s(log: str) -> float:
    """The input's duration from ffmpeg's report; 0 when it gives none (Duration: N/A)."""
    match = _DURATION.search(log)
    if match is None:
        return 0.0
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _failure_reason(stderr: bytes | None) -> str:
    """Why ffmpeg failed, in words a user can act on: a known cause, else its last error line."""
    lines = [_LOG_PREFIX.sub("", ln).strip() for ln in (stderr or b"").decode(errors="replace").splitlines()]
    text = "\n".join(lines)
    for marker, reason in _KNOWN_CAUSES:
        if marker in text:
            return reason
    errors = [ln for ln in lines if _ERROR_WORDS.search(ln)]
    return errors[-1][:300] if errors else ""
