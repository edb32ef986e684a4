"""Video decoding: one ffmpeg decoder for every source, so pixels never depend on the reader."""

from .ffmpeg import AudioError, DecodedAudio, DecodedVideo, decode_audio, decode_gray, ffmpeg_binary

__all__ = ["AudioError", "DecodedAudio", "DecodedVideo", "decode_audio", "decode_gray", "ffmpeg_binary"]
