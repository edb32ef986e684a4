"""Decode a video to grayscale frames, and its audio to 16 kHz mono, with the ffmpeg program (ffmpeg-python).

One program run per clip: the reference the in-process path (:mod:`flowprep.decode.inprocess`, the
default) is tested against, and the decoder when ``$FLOWPREP_FFMPEG`` names a program. The rule that
judges a stream complete (:func:`check_complete`) and the audio cut (:func:`place_audio`) are shared.

The binary is the one named by ``$FLOWPREP_FFMPEG`` or, by default, the static build that
imageio-ffmpeg ships, so every machine decodes with the same ffmpeg. No ffprobe is needed:
frames come out as a PGM stream whose headers carry the size, and the frame rate is read
from ffmpeg's own report of the input stream.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ffmpeg
import numpy as np

from ..errors import ClipError, DecodeError, FlowprepError
from .container import avi_video_frames, mpeg_video_frame_rate

_INPUT_FORMAT = re.compile(r"^Input #0, (.*?), from ", re.MULTILINE)
_INPUT_VIDEO = re.compile(r"^\s*Stream #0:(\d+)[^:\n]*: Video: ([^\n]*)", re.MULTILINE)
_STREAM_FPS = re.compile(r"(\d+(?:\.\d+)?)(k?) fps\b")  # avg_frame_rate; "tbr" is only a guess
_STREAM_TBR = re.compile(r"(\d+(?:\.\d+)?)(k?) tbr\b")
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
# Fewer decoded frames than this share of what the container declares means the stream stopped early.
_MIN_FRAME_SHARE = 0.9
# What ffmpeg says when the video stream breaks off: a decoder that met a cut frame, a demuxer that met
# a cut packet or container ("{v}": the video stream's index). Audio damage is not the video's concern.
_TRUNCATION_MARKERS = (
    "corrupt decoded frame",
    "File ended prematurely",
    "partial file",
    "Truncating packet",
    "corrupt input packet in stream {v}",
    "Packet corrupt (stream = {v},",
)
# Containers whose reported duration comes from their header (survives truncation); ffmpeg estimates
# the others' (MPEG-PS/TS from the file size, AVI from the packets it finds).
HEADER_DURATION_FORMATS = ("mov,mp4", "matroska")


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


def decode_gray(path: str | Path, max_frames: int | None = None, expected_frames: int | None = None) -> DecodedVideo:
    """Decode every frame of ``path`` to 8-bit grayscale at the source frame rate.

    Raises DecodeError (a per-clip failure, never a crash) for a missing, empty, corrupt or
    non-video file, and for a stream that ends early: one where ffmpeg reports a cut frame or
    packet, one with clearly fewer frames than its container declares (an MP4's or MKV's header
    duration, an AVI's frame count), or one with fewer than ``expected_frames`` (what the dataset's
    layout knows: LRW clips hold 29). The reason names both counts ("35 of 75 frames decoded").
    With ``max_frames`` a prefix is read and none of these end-of-stream checks apply.
    """
    path = Path(path)
    _check_regular_file(path)
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
        raise DecodeError(failure_reason(exc.stderr) or "ffmpeg could not decode the file") from None
    frames = _parse_pgm_stream(raw)
    log = err.decode(errors="replace")
    if frames.shape[0] == 0:
        raise DecodeError(failure_reason(err) or "no video frames decoded")
    fps = _frame_rate(log, path)
    if max_frames is None:
        _check_complete(frames.shape[0], log, path, fps, expected_frames)
    return DecodedVideo(frames=frames, fps=fps)


def _check_regular_file(path: Path) -> None:
    """DecodeError unless ``path`` is a regular file; stat'ed, never opened (a FIFO would block ffmpeg)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        raise DecodeError(f"file not found: {path}") from None
    if stat.S_ISDIR(mode):
        raise DecodeError(f"file not found: {path} is a folder")
    if not stat.S_ISREG(mode):
        raise DecodeError(f"not a regular file (a FIFO, socket or device): {path} is left unopened")


def _video_stream(log: str) -> tuple[int, str]:
    """(index, description) of the input's first video stream in ffmpeg's report."""
    match = _INPUT_VIDEO.search(log)
    return (int(match.group(1)), match.group(2)) if match else (0, "")


def _rate(match: re.Match | None) -> float | None:
    if match is None:
        return None
    value = float(match.group(1)) * (1000 if match.group(2) else 1)
    return value if value > 0 else None


def _frame_rate(log: str, path: Path) -> float:
    """The stream's own frame rate: ffmpeg's average rate, else an MPEG sequence header's, else its
    tbr guess (a one-frame MPEG-PS clip has no average, and its tbr reads 50 for a 25 fps stream)."""
    _, video = _video_stream(log)
    return _rate(_STREAM_FPS.search(video)) or mpeg_video_frame_rate(path) or _rate(_STREAM_TBR.search(video)) or 25.0


def declared_frames(log: str, path: Path, fps: float) -> int | None:
    """The frame count the container declares in a header that survives truncation, None when it
    declares none (MPEG-PS/TS) or ffmpeg's figure is an estimate."""
    fmt = _INPUT_FORMAT.search(log)
    name = fmt.group(1) if fmt else ""
    if name == "avi":
        return avi_video_frames(path)
    if any(name.startswith(f) for f in HEADER_DURATION_FORMATS):
        duration = _duration_s(log)
        return int(round(duration * fps)) if duration > 0 else None
    return None


def _truncation_error(log: str) -> str:
    """ffmpeg's own line saying the video stream broke off, "" when it said nothing of the kind."""
    index, _ = _video_stream(log)
    markers = [m.format(v=index) for m in _TRUNCATION_MARKERS]
    for line in log.splitlines():
        if any(m in line for m in markers):
            return _LOG_PREFIX.sub("", line).strip().rstrip(".")[:300]
    return ""


def _check_complete(count: int, log: str, path: Path, fps: float, expected: int | None) -> None:
    """Raise DecodeError when the evidence in ffmpeg's report says the stream ended early (see decode_gray)."""
    check_complete(count, declared_frames(log, path, fps), _truncation_error(log), expected)


def check_complete(count: int, declared: int | None, broken: str, expected: int | None) -> None:
    """Raise DecodeError when the evidence says the stream ended before its end: ``broken`` (the
    decoder's or demuxer's own words for a cut, "" when none), fewer frames than the container
    ``declared`` or than the layout ``expected``. Both decode paths judge with this one rule."""
    short_of_container = declared is not None and count < _MIN_FRAME_SHARE * declared - 1
    short_of_layout = expected is not None and count < expected
    if not (broken or short_of_container or short_of_layout):
        return
    whole = declared if declared is not None else (expected or 0)
    counts = f"{count} of {whole} frames decoded" if whole > count else f"{count} frames decoded"
    if broken:
        raise DecodeError(f"{counts}: the video stream breaks off ({broken})")
    if short_of_container:
        counts, source = f"{count} of {declared} frames decoded", "as many as the container declares"
    else:
        counts, source = f"{count} of {expected} frames decoded", "the frames every clip of this dataset holds"
    raise DecodeError(f"{counts}, not {source}: the file is truncated or damaged")


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
    _check_regular_file(path)
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
            raise AudioError(failure_reason(exc.stderr) or "ffmpeg could not decode the audio") from None
        probed = False
        try:  # an audio-only file: no first frame to align to, timeline 0 it is
            raw, err = _run(audio)
        except ffmpeg.Error as exc2:
            raise AudioError(failure_reason(exc2.stderr) or "ffmpeg could not decode the audio") from None
    log = err.decode(errors="replace")
    samples = np.frombuffer(raw, np.int16 if dtype == "int16" else np.float32)
    if samples.size == 0:
        raise AudioError("the audio stream holds no decodable samples")
    match = _FIRST_VIDEO_PTS.search(log)
    if probed and match is None:  # never guess an alignment
        raise AudioError("ffmpeg did not report the first video frame's time (showinfo); cannot align the audio")
    start_s = float(match.group(1)) if match else 0.0
    return place_audio(samples, rate, start_s, num_frames, fps, _leading_pad(log, rate))


def place_audio(
    samples: np.ndarray, rate: int, start_s: float, num_frames: int | None, fps: float | None, pad: int
) -> DecodedAudio:
    """Cut ffmpeg's resampled output (sample 0 at the file's timeline 0) to the video's frames.

    ``start_s``: the first video frame's time on that timeline; ``pad``: samples of silence ffmpeg put
    before the audio stream's own start. Both decode paths end here.
    """
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
    real = max(0, hi - max(lo, pad))
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


def failure_reason(stderr: bytes | None) -> str:
    """Why ffmpeg failed, in words a user can act on: a known cause, else its last error line."""
    lines = [_LOG_PREFIX.sub("", ln).strip() for ln in (stderr or b"").decode(errors="replace").splitlines()]
    text = "\n".join(lines)
    for marker, reason in _KNOWN_CAUSES:
        if marker in text:
            return reason
    errors = [ln for ln in lines if _ERROR_WORDS.search(ln)]
    return errors[-1][:300] if errors else ""
