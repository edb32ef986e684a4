"""Decode inside the calling process with ffmpeg's own libraries (PyAV), not one ffmpeg process per clip.

Starting an ffmpeg process and piping its frames back cost more than decoding a 29-frame LRW clip
(measured on 256x256 H.264: about 1.4 ms/frame through a process per clip, about 0.45 ms/frame here,
see benchmarks/decode_paths.py). PyAV binds the same libraries the ffmpeg program is built from
(libavformat, libavcodec, libswscale, libswresample): the same demuxers and decoders, the same
gray conversion, hence the same pixels; tests/decode/test_inprocess.py compares both paths frame for
frame on MPEG-PS, MP4, AVI, MKV and WebM. The evidence that a stream was cut is also the same: the
ffmpeg program prints "corrupt decoded frame" and "corrupt input packet" from the frame and packet
flags read here, and the libraries' own warnings ("partial file", "File ended prematurely", …) are
captured from their log while a file is read. :mod:`flowprep.decode.ffmpeg` (the ffmpeg program)
stays as the reference the tests compare with, and for writing test media.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import av
import av.logging
import numpy as np
from av.video.reformatter import VideoReformatter

from ..errors import DecodeError
from .container import avi_video_frames, mpeg_video_frame_rate
from .ffmpeg import (
    HEADER_DURATION_FORMATS,
    AudioError,
    DecodedAudio,
    DecodedVideo,
    _check_regular_file,
    check_complete,
    failure_reason,
    place_audio,
)

# The libraries' words for a video stream that breaks off ({v}: its index); the ffmpeg program's own
# words ("corrupt decoded frame", "corrupt input packet") come from flags, see _gray_frames.
_LIBRARY_MARKERS = ("File ended prematurely", "partial file", "Truncating packet", "Packet corrupt (stream = {v},")
# Formats whose first plane is 8-bit luma: their gray picture is a function of each luma value alone,
# so the scaler's answer for all 256 values (a table) converts a frame at a fraction of its cost.
_LUMA_FIRST = frozenset({"gray", "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
                         "yuv440p", "yuvj440p", "yuv411p", "yuv410p", "nv12", "nv21", "nv16", "nv24"})
_LOCAL = threading.local()  # per thread: a scaler (building one per frame costs more than converting) and tables


class _Gray:
    """Frames to gray arrays exactly as the ffmpeg program's scaler makes them (same library, same
    source range), through a per-format table of the scaler's own output for every luma value."""

    def __init__(self) -> None:
        self.reformatter = VideoReformatter()
        self.tables: dict[tuple[str, int], np.ndarray] = {}

    def convert(self, frame) -> np.ndarray:
        name, color_range = frame.format.name, int(frame.color_range)
        if name not in _LUMA_FIRST:
            return self._scaled(frame, color_range)
        table = self.tables.get((name, color_range))
        if table is None:
            table = self.tables[(name, color_range)] = self._table(name, color_range)
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
        return table[luma]

    def _scaled(self, frame, color_range: int) -> np.ndarray:
        return self.reformatter.reformat(frame, format="gray", src_color_range=color_range).to_ndarray()

    def _table(self, name: str, color_range: int) -> np.ndarray:
        """The scaler's gray value for each of the 256 luma values (a 16x16 frame holding them all)."""
        probe = av.VideoFrame(16, 16, name)
        plane = probe.planes[0]
        values = np.arange(256, dtype=np.uint8).reshape(16, 16)
        rows = np.zeros((16, plane.line_size), np.uint8)
        rows[:, :16] = values
        plane.update(rows.tobytes())
        for other in probe.planes[1:]:
            other.update(np.full(other.buffer_size, 128, np.uint8).tobytes())
        gray = self._scaled(probe, color_range)
        table = np.empty(256, np.uint8)
        table[values.ravel()] = gray.ravel()
        return table


def _gray_converter() -> _Gray:
    if not hasattr(_LOCAL, "gray"):
        _LOCAL.gray = _Gray()
    return _LOCAL.gray


_LOG_LOCK = threading.Lock()
_LOG_USERS = [0, None, True]  # decodes running now; level and repeat-skipping before the first (_library_log)


@contextmanager
def _library_log():
    """The libraries' warnings and errors while the block runs, as a list of lines (this thread's).

    The libraries' log level is process-wide: it is raised while any decode runs (counted, so one
    thread's end does not silence another's evidence) and put back after the last."""
    with _LOG_LOCK:
        if _LOG_USERS[0] == 0:
            _LOG_USERS[1:] = [av.logging.get_level(), av.logging.get_skip_repeated()]
            av.logging.set_level(av.logging.WARNING)
            # PyAV drops a line equal to the one before it, whichever file or thread it came from: the
            # second cut file in a row would lose its evidence
            av.logging.set_skip_repeated(False)
        _LOG_USERS[0] += 1
    try:
        with av.logging.Capture() as captured:
            yield captured
    finally:
        with _LOG_LOCK:
            _LOG_USERS[0] -= 1
            if _LOG_USERS[0] == 0:
                av.logging.set_level(_LOG_USERS[1])
                av.logging.set_skip_repeated(_LOG_USERS[2])


def _log_text(captured) -> str:
    return "\n".join(message.rstrip() for _level, _name, message in captured)


def _open(path: Path, captured, error: type[DecodeError]):
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        text = _log_text(captured) + "\n" + str(exc)
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise error(failure_reason(text.encode()) or f"ffmpeg could not open the file ({why})") from None


def decode_gray(path: str | Path, max_frames: int | None = None, expected_frames: int | None = None) -> DecodedVideo:
    """Decode every frame of ``path`` to 8-bit grayscale at the source frame rate, in this process.

    The same contract as the ffmpeg program's path (:func:`flowprep.decode.ffmpeg.decode_gray`):
    DecodeError for a missing, empty, corrupt or non-video file and for a stream that ends early
    (a cut frame or packet, fewer frames than the container declares or than ``expected_frames``);
    ``max_frames`` reads a prefix without those checks.
    """
    path = Path(path)
    _check_regular_file(path)
    if path.stat().st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    with _library_log() as captured:
        with _open(path, captured, DecodeError) as container:
            if not container.streams.video:
                raise DecodeError("no video stream in the file")
            stream = container.streams.video[0]
            stream.thread_type = "NONE"  # one core per worker; decoding in this thread keeps its log here
            frames, flagged = _gray_frames(container, stream, max_frames)
            fps = _frame_rate(stream, path)
            declared = _declared_frames(container, path, fps)
    log = _log_text(captured)
    if not frames:
        raise DecodeError(failure_reason(log.encode()) or "no video frames decoded")
    video = DecodedVideo(frames=np.stack(frames), fps=fps)
    if max_frames is None:
        # a damaged packet or frame flagged by the libraries comes first: those flags are part of the data,
        # while a log line can be missed (the libraries' log is process-wide and delivered by callback),
        # so the same cut file always gets the same reason; the log speaks for a cut the flags do not show
        broken = flagged or _library_marker(log, stream.index)
        check_complete(video.num_frames, declared, broken, expected_frames)
    return video


def _decoded(container, stream, damage: list[str]):
    """Every frame the decoder gives for ``stream``. A packet it refuses is passed over, as the ffmpeg
    program does; the program's words for each damaged packet are added to ``damage`` in stream order."""
    for packet in container.demux(stream):
        if packet.is_corrupt:
            damage.append(f"corrupt input packet in stream {stream.index}")
        try:
            decoded = packet.decode()
        except av.error.FFmpegError:
            continue
        yield from decoded


def _gray_frames(container, stream, max_frames: int | None) -> tuple[list[np.ndarray], str]:
    """The stream's frames as gray arrays, and the ffmpeg program's words for the first damaged
    packet or frame ("" when none)."""
    gray, frames, damage = _gray_converter(), [], []
    for frame in _decoded(container, stream, damage):
        if frame.is_corrupt:
            damage.append(f"corrupt decoded frame in stream {stream.index}")
        frames.append(gray.convert(frame))
        if max_frames is not None and len(frames) >= max_frames:
            break
    return frames, damage[0] if damage else ""


def _library_marker(log: str, index: int) -> str:
    markers = [m.format(v=index) for m in _LIBRARY_MARKERS]
    for line in log.splitlines():
        if any(m in line for m in markers):
            return line.strip().rstrip(".")[:300]
    return ""


def _frame_rate(stream, path: Path) -> float:
    """The stream's average rate, else an MPEG sequence header's, else the libraries' guess (tbr)."""
    for rate in (stream.average_rate, mpeg_video_frame_rate(path), stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return 25.0


def _declared_frames(container, path: Path, fps: float) -> int | None:
    """The frame count a header that survives truncation declares (see ffmpeg.declared_frames)."""
    name = container.format.name
    if name == "avi":
        return avi_video_frames(path)
    if name.startswith(HEADER_DURATION_FORMATS) and container.duration:
        return int(round(container.duration / av.time_base * fps))
    return None


def decode_audio(
    path: str | Path,
    rate: int = 16000,
    num_frames: int | None = None,
    fps: float | None = None,
    dtype: str = "int16",
) -> DecodedAudio:
    """The audio of ``path`` as mono PCM at ``rate`` Hz, aligned to its first video frame, in this process.

    The same contract and the same filters as :func:`flowprep.decode.ffmpeg.decode_audio`: the file's
    timeline starts at 0 (its start time subtracted, as the ffmpeg program does), the first audio
    stream goes through ``aresample=async=1:first_pts=0`` (silence where the audio starts late, gaps
    filled) and out as mono ``rate`` Hz; the samples of the first video frame start at
    round(start_s * rate). AudioError (stage "audio") without an audio stream or decodable audio.
    """
    path = Path(path)
    _check_regular_file(path)
    if dtype not in ("int16", "float32"):
        raise ValueError(f"dtype {dtype!r}: use int16 or float32")
    if num_frames is not None and (not fps or fps <= 0):
        raise ValueError("num_frames needs the video's fps")
    with _library_log() as captured:
        with _open(path, captured, AudioError) as container:
            if not container.streams.audio:
                raise AudioError("no audio stream")
            file_start = (container.start_time or 0) / av.time_base
            start_s = _first_frame_time(container, file_start) if container.streams.video else 0.0
            samples, pad = _resampled(container, rate, dtype, file_start)
    if samples.size == 0:
        raise AudioError(failure_reason(_log_text(captured).encode()) or "the audio stream holds no decodable samples")
    return place_audio(samples, rate, start_s, num_frames, fps, pad)


def _first_frame_time(container, file_start: float) -> float:
    """Where the first decoded video frame sits on the file's timeline (what showinfo reports)."""
    stream = container.streams.video[0]
    stream.thread_type = "NONE"
    for packet in container.demux(stream):
        try:
            decoded = packet.decode()
        except av.error.FFmpegError:
            continue
        for frame in decoded:
            if frame.pts is None:
                break
            return float(frame.pts * frame.time_base) - file_start
    raise AudioError("the first video frame has no time; cannot align the audio")


def _resampled(container, rate: int, dtype: str, file_start: float) -> tuple[np.ndarray, int]:
    """The first audio stream through the ffmpeg program's filters, and the samples of silence put
    before the stream's own start (its start minus the file's)."""
    container.seek(0)  # the video probe read ahead
    stream = container.streams.audio[0]
    fmt = "s16" if dtype == "int16" else "flt"
    graph = av.filter.Graph()
    source = graph.add_abuffer(template=stream)
    chain = [
        graph.add("aresample", f"{rate}:async=1:first_pts=0"),
        graph.add("aformat", f"sample_fmts={fmt}:sample_rates={rate}:channel_layouts=mono"),
        graph.add("abuffersink"),
    ]
    source.link_to(chain[0])
    chain[0].link_to(chain[1])
    chain[1].link_to(chain[2])
    graph.configure()
    offset = int(round(file_start / stream.time_base)) if stream.time_base else 0
    out: list[np.ndarray] = []

    def drain() -> None:
        while True:
            try:
                frame = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            out.append(frame.to_ndarray().reshape(-1))

    for frame in _decoded(container, stream, []):
        if frame.pts is not None:
            frame.pts -= offset
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    own_start = (stream.start_time * stream.time_base - file_start) if stream.start_time is not None else 0.0
    samples = np.concatenate(out) if out else np.zeros(0, np.int16 if dtype == "int16" else np.float32)
    return samples, max(0, int(round(float(own_start) * rate)))
