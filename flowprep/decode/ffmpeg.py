"""Decode a video to grayscale frames with ffmpeg (through ffmpeg-python).

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

from ..errors import DecodeError, FlowprepError

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
