"""Video decoding: one ffmpeg decoder for every source, so pixels never depend on the reader.

By default ffmpeg's libraries run inside the calling process (PyAV, :mod:`flowprep.decode.inprocess`):
no process start and no pipe per clip. With ``$FLOWPREP_FFMPEG`` set, the ffmpeg program named there
decodes, one run per clip (:mod:`flowprep.decode.ffmpeg`, also the reference the in-process path is
tested against frame for frame).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import ffmpeg, inprocess
from .ffmpeg import AudioError, DecodedAudio, DecodedVideo, ffmpeg_binary


def decoder_name() -> str:
    """"ffmpeg-program" when $FLOWPREP_FFMPEG names a program to decode with, else "in-process"."""
    return "ffmpeg-program" if os.environ.get("FLOWPREP_FFMPEG") else "in-process"


def decode_gray(path: str | Path, max_frames: int | None = None, expected_frames: int | None = None) -> DecodedVideo:
    """Every frame of ``path`` as 8-bit gray (see :func:`flowprep.decode.inprocess.decode_gray`)."""
    module = ffmpeg if decoder_name() == "ffmpeg-program" else inprocess
    return module.decode_gray(path, max_frames=max_frames, expected_frames=expected_frames)


def decode_audio(path: str | Path, rate: int = 16000, num_frames: int | None = None, fps: float | None = None,
                 dtype: str = "int16") -> DecodedAudio:
    """The audio of ``path`` on the video's clock (see :func:`flowprep.decode.inprocess.decode_audio`)."""
    module = ffmpeg if decoder_name() == "ffmpeg-program" else inprocess
    return module.decode_audio(path, rate=rate, num_frames=num_frames, fps=fps, dtype=dtype)


__all__ = ["AudioError", "DecodedAudio", "DecodedVideo", "decode_audio", "decode_gray", "decoder_name",
           "ffmpeg_binary"]
