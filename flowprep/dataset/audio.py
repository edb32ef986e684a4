"""Audio next to the frames: cut it by frame, and log-mel features aligned to video frames, on read.

Shards store each clip's audio as 16 kHz mono int16 samples on the video's clock: frame i of a clip
at ``fps`` covers samples ``[i*rate/fps, (i+1)*rate/fps)`` (640 samples per frame at 25 fps). The
features are computed here, from the samples, when a clip is read: any window, any number of mel
bands, any shift (AV-sync impostors), without rebuilding the shards.

``log_mel`` puts ``per_frame`` mel frames in every video frame: mel frame j is centred at
``(j + 0.5) * rate / (fps * per_frame)`` samples, so mel frames ``[i*per_frame, (i+1)*per_frame)``
describe video frame i exactly, for any fps (the window positions are computed, not a rounded hop).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


def frame_samples(frame: float, rate: int, fps: float) -> int:
    """The first sample of video frame ``frame`` (may be fractional: a time in frames)."""
    return int(math.floor(frame * rate / fps + 1e-9))


def audio_for_frames(
    audio: np.ndarray | torch.Tensor,
    rate: int,
    fps: float,
    start: int,
    stop: int,
    shift_s: float = 0.0,
) -> np.ndarray | torch.Tensor:
    """The samples that go with video frames ``[start, stop)``, taken ``shift_s`` seconds later in the
    audio (negative: earlier), zero where that window leaves the clip's audio.

    ``shift_s=0`` is the genuine, in-sync pair; a shift of about 0.5 s gives the impostor pairs of
    audio-visual synchronisation training. The result always holds the samples of ``stop - start``
    frames, so genuine and shifted windows stack into one batch.
    """
    a = frame_samples(start, rate, fps) + int(round(shift_s * rate))
    want = frame_samples(stop, rate, fps) - frame_samples(start, rate, fps)
    lo, hi = max(0, a), min(len(audio), a + want)
    if isinstance(audio, torch.Tensor):
        out = audio.new_zeros((want,) + tuple(audio.shape[1:]))
    else:
        out = np.zeros((want,) + audio.shape[1:], audio.dtype)
    if hi > lo:
        out[lo - a:hi - a] = audio[lo:hi]
    return out


@lru_cache(maxsize=16)
def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """[n_fft//2+1, n_mels] float32 triangular filters on the HTK mel scale (unnormalised, peak 1)."""
    fmax = rate / 2 if fmax is None else fmax

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower = (freqs[:, None] - edges[None, :-2]) / np.maximum(edges[1:-1] - edges[:-2], 1e-9)
    upper = (edges[None, 2:] - freqs[:, None]) / np.maximum(edges[2:] - edges[1:-1], 1e-9)
    return np.clip(np.minimum(lower, upper), 0.0, None).astype(np.float32)


def log_mel(
    audio: np.ndarray | torch.Tensor,
    rate: int,
    fps: float,
    frames: int | None = None,
    n_mels: int = 80,
    per_frame: int = 4,
    win_s: float = 0.025,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Log mel energies aligned to video frames: ``[..., frames * per_frame, n_mels]`` float32.

    ``audio``: samples ``[..., S]`` (int16 as stored, or float in -1..1), batched or not; runs where the
    tensor is (CPU or GPU). ``frames`` defaults to the frames the samples cover. Windows are Hann,
    ``win_s`` long (25 ms: 400 samples at 16 kHz), centred on each mel frame; samples outside the
    clip count as zeros. At 25 fps and ``per_frame=4`` the hop is 10 ms, the usual speech front end.
    """
    x = torch.as_tensor(audio)
    if x.dtype == torch.int16:
        x = x.to(torch.float32) / 32768.0
    else:
        x = x.to(torch.float32)
    length = x.shape[-1]
    if frames is None:
        frames = int(math.floor(length * fps / rate + 1e-9))
    win = max(2, int(round(win_s * rate)))
    n = frames * per_frame
    centres = (torch.arange(n, dtype=torch.float64, device=x.device) + 0.5) * (rate / (fps * per_frame))
    starts = torch.round(centres - win / 2).to(torch.long)
    pad = max(0, int(-starts.min())) if n else 0
    right = max(0, int(starts.max()) + win - length + pad) if n else 0
    xp = torch.nn.functional.pad(x, (pad, right))
    index = (starts + pad)[:, None] + torch.arange(win, device=x.device)[None, :]  # [n, win]
    windows = xp[..., index] * torch.hann_window(win, periodic=True, device=x.device)
    power = torch.fft.rfft(windows, n=win).abs().square()  # [..., n, win//2+1]
    fb = torch.from_numpy(mel_filterbank(rate, win, n_mels)).to(x.device)
    return torch.log(power @ fb + eps)
