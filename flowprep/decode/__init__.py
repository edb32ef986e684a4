"""Video decoding: one ffmpeg decoder for every source, so pixels never depend on the reader."""

from .ffmpeg import DecodedVideo, decode_gray, ffmpeg_binary

__all__ = ["DecodedVideo", "decode_gray", "ffmpeg_binary"]
