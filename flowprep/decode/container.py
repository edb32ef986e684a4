"""What a video's container says about its stream, read from the bytes at its start.

A file cut short keeps its header: an AVI's stream header still holds the frame count the muxer
wrote, an MPEG-1/2 sequence header its frame rate. ffmpeg does not report either once the end is
gone (it rebuilds an AVI's length from the packets it finds, and guesses an MPEG program stream's
duration from the file size), so the decoder reads them here to tell a whole stream from a
truncated one. Only the first bytes are read; nothing here decodes.
"""

from __future__ import annotations

import struct
from pathlib import Path

# How much of the file the header readers look at: headers sit in the first few kilobytes.
_HEAD_BYTES = 256 * 1024
# MPEG-1/2 video frame_rate_code -> frames per second (ISO/IEC 13818-2, table 6-4).
_MPEG_FRAME_RATES = {1: 24000 / 1001, 2: 24.0, 3: 25.0, 4: 30000 / 1001, 5: 30.0, 6: 50.0, 7: 60000 / 1001, 8: 60.0}


def _head(path: str | Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(_HEAD_BYTES)


def avi_video_frames(path: str | Path) -> int | None:
    """The frame count an AVI's first video stream header declares (strh dwLength), None when the
    file is not an AVI or the header is unreadable."""
    data = _head(path)
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"AVI ":
        return None
    return _find_strh_length(data, 12, len(data))


def _find_strh_length(data: bytes, start: int, end: int) -> int | None:
    pos = start
    while pos + 8 <= end:
        fourcc = data[pos:pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if fourcc == b"LIST":
            kind = data[body:body + 4]
            if kind in (b"hdrl", b"strl"):
                found = _find_strh_length(data, body + 4, min(body + size, end))
                if found is not None:
                    return found
            elif kind == b"movi":  # the headers come before the frames: nothing more to find
                return None
        elif fourcc == b"strh" and body + 36 <= end and data[body:body + 4] == b"vids":
            (length,) = struct.unpack_from("<I", data, body + 32)
            return int(length) or None
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    return None


def mpeg_video_frame_rate(path: str | Path) -> float | None:
    """The frame rate in the first MPEG-1/2 video sequence header of the file, None without one."""
    data = _head(path)
    at = data.find(b"\x00\x00\x01\xb3")
    if at < 0 or at + 8 > len(data):
        return None
    code = data[at + 7] & 0x0F  # after 12 bits width, 12 bits height, 4 bits aspect ratio
    return _MPEG_FRAME_RATES.get(code)


def mp4_video_frames(path: str | Path) -> int | None:
    """The sample (frame) count of an MP4/MOV's first video track (its stsz box), None when the file
    is not an MP4 or has no readable index. Reads box headers and the index, wherever it sits
    (ffmpeg writes it at the end unless asked for +faststart), never the media data."""
    try:
        with open(path, "rb") as fh:
            moov = _top_level_box(fh, b"moov")
    except OSError:
        return None
    if moov is None:
        return None
    for trak in _boxes(moov, b"trak"):
        for mdia in _boxes(trak, b"mdia"):
            handlers = [h for h in _boxes(mdia, b"hdlr") if len(h) >= 12]
            if not handlers or handlers[0][8:12] != b"vide":
                continue
            for stsz in _path(mdia, (b"minf", b"stbl", b"stsz")):
                if len(stsz) >= 12:
                    return struct.unpack_from(">I", stsz, 8)[0] or None
    return None


def _top_level_box(fh, kind: bytes, limit: int = 64 << 20) -> bytes | None:
    """The body of the first top-level box ``kind`` (at most ``limit`` bytes), skipping the others by seeking."""
    while True:
        header = fh.read(8)
        if len(header) < 8:
            return None
        size, found = struct.unpack(">I4s", header)
        start = 8
        if size == 1:
            large = fh.read(8)
            if len(large) < 8:
                return None
            (size,) = struct.unpack(">Q", large)
            start = 16
        if found == kind:
            body_size = size - start if size else limit
            if body_size < 0 or body_size > limit:
                return None
            return fh.read(body_size)
        if size == 0 or size < start:  # runs to the end of the file, or garbled
            return None
        fh.seek(size - start, 1)


def _boxes(data: bytes, kind: bytes):
    """The bodies of the boxes ``kind`` directly inside ``data``."""
    pos = 0
    while pos + 8 <= len(data):
        size, found = struct.unpack_from(">I4s", data, pos)
        start = 8
        if size == 1 and pos + 16 <= len(data):
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            start = 16
        if size == 0:
            size = len(data) - pos
        if size < start:
            return
        if found == kind:
            yield data[pos + start:pos + size]
        pos += size


def _path(data: bytes, kinds: tuple[bytes, ...]):
    if not kinds:
        yield data
        return
    for body in _boxes(data, kinds[0]):
        yield from _path(body, kinds[1:])
