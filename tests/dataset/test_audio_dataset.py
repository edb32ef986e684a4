"""ShardDataset's audio and landmarks streams, pad_collate with audio, and the aligned log-mel helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flowprep.dataset import ShardDataset, audio_for_frames, log_mel, pad_collate
from flowprep.errors import FlowprepError
from flowprep.transforms import AudioLogMel, Compose, KeypointHeatmaps, RandomCrop
from tests.shards.test_audio_shards import RATE, _folder, _with_audio
from tests.shards.test_writer import _result

FPS = 25.0
PER_FRAME = int(RATE / FPS)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio_shards")
    rng = np.random.default_rng(7)
    lengths = [[29, 29, 75], [29, 40]]
    _folder(root, [[_with_audio(10 * k + j, t, rng) for j, t in enumerate(ts)] for k, ts in enumerate(lengths)],
            audio=True)
    return root


def test_streams_audio_and_landmarks(audio_dir):
    ds = ShardDataset(audio_dir, split="train", streams=("gray", "audio", "landmarks"))
    assert len(ds) == 5
    for i in range(len(ds)):
        s = ds[i]
        t = s["gray"].shape[0]
        assert s["audio"].dtype == torch.int16 and s["audio"].shape == (t * PER_FRAME,)
        assert s["audio_rate"] == RATE and s["fps"] == FPS
        assert s["landmarks"].shape == (t, 68, 2)


def test_pad_collate_pads_audio_with_its_own_lengths(audio_dir):
    ds = ShardDataset(audio_dir, split="train", streams=("gray", "audio"))
    mixed = pad_collate([ds[0], ds[2], ds[4]])  # 29, 75 and 40 frames
    assert mixed["lengths"].tolist() == [29, 75, 40]
    assert mixed["audio_lengths"].tolist() == [29 * PER_FRAME, 75 * PER_FRAME, 40 * PER_FRAME]
    assert mixed["audio"].shape == (3, 75 * PER_FRAME) and mixed["audio"].dtype == torch.int16
    assert torch.equal(mixed["audio"][0, : 29 * PER_FRAME], ds[0]["audio"])
    assert not mixed["audio"][0, 29 * PER_FRAME:].any()
    assert mixed["gray"].shape == (3, 75, 16, 16)
    same = pad_collate([ds[0], ds[1]])  # equal lengths: stacked, still with audio_lengths
    assert same["audio"].shape == (2, 29 * PER_FRAME) and same["audio_lengths"].tolist() == [29 * PER_FRAME] * 2


def test_dataloader_workers_carry_audio_and_keypoints(audio_dir):
    aug = Compose([RandomCrop(12, seed=0), KeypointHeatmaps(sigma=1.0, combine="max"), AudioLogMel(n_mels=40)])
    ds = ShardDataset(audio_dir, split="train", streams=("gray", "audio", "landmarks"), transform=aug)
    batches = list(DataLoader(ds, batch_size=5, num_workers=2, collate_fn=pad_collate))
    assert len(batches) == 1
    b = batches[0]
    assert b["audio"].shape == (5, 75 * PER_FRAME) and b["heatmaps"].shape == (5, 75, 1, 12, 12)
    assert b["audio_mel"].shape == (5, 75 * 4, 40)


def test_audio_stream_needs_an_audio_build(tmp_path):
    rng = np.random.default_rng(8)
    _folder(tmp_path, [[_result(0, 5, rng)]], audio=False)
    with pytest.raises(FlowprepError, match="without audio.*--audio"):
        ShardDataset(tmp_path, split="train", streams=("gray", "audio"))
    assert ShardDataset(tmp_path, split="train")[0]["gray"].shape == (5, 16, 16)


def _tone_on_frames(frames: int, start: int, stop: int, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(frames * PER_FRAME) / RATE
    on = (t >= start / FPS) & (t < stop / FPS)
    return (12000 * np.sin(2 * np.pi * freq * t) * on).astype(np.int16)


@pytest.fixture
def one_thread():
    """Small tensors: one intra-op thread is faster, and immune to a busy machine's thread contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_log_mel_frames_line_up_with_video_frames(one_thread):
    audio = _tone_on_frames(30, 10, 15)
    mel = log_mel(audio, RATE, FPS, n_mels=40, per_frame=4)
    assert mel.shape == (30 * 4, 40) and mel.dtype == torch.float32
    loud = mel.max(dim=1).values
    on = loud > (loud.max() + loud.min()) / 2
    # mel frame j is centred at (j + 0.5) * 160 samples; a 400-sample window reaches 1.25 hops either side
    first, last = int(np.flatnonzero(on.numpy())[0]), int(np.flatnonzero(on.numpy())[-1])
    assert abs(first - 40) <= 1 and abs(last - 59) <= 1
    # batched, on int16 or float input, the same numbers
    batch = torch.stack([torch.from_numpy(audio), torch.from_numpy(_tone_on_frames(30, 0, 5))])
    both = log_mel(batch, RATE, FPS, n_mels=40)
    assert torch.allclose(both[0], mel, atol=1e-4)
    assert torch.allclose(log_mel(audio.astype(np.float32) / 32768, RATE, FPS, n_mels=40), mel, atol=1e-4)
    # any fps: 29.97 has no whole number of samples per frame, the windows still tile the frames
    assert log_mel(audio, RATE, 29.97, frames=20).shape == (80, 80)


def test_audio_for_frames_and_shifted_impostors():
    audio = np.arange(30 * PER_FRAME, dtype=np.int16)
    genuine = audio_for_frames(audio, RATE, FPS, 5, 10)
    np.testing.assert_array_equal(genuine, audio[5 * PER_FRAME:10 * PER_FRAME])
    shifted = audio_for_frames(audio, RATE, FPS, 5, 10, shift_s=0.5)  # 0.5 s = 12.5 frames later
    np.testing.assert_array_equal(shifted, audio[5 * PER_FRAME + 8000:10 * PER_FRAME + 8000])
    past_end = audio_for_frames(torch.from_numpy(audio), RATE, FPS, 25, 30, shift_s=0.1)
    assert past_end.shape == (5 * PER_FRAME,) and isinstance(past_end, torch.Tensor)
    assert torch.equal(past_end[: 5 * PER_FRAME - 1600], torch.from_numpy(audio[25 * PER_FRAME + 1600:]))
    assert not past_end[5 * PER_FRAME - 1600:].any()
    before_start = audio_for_frames(audio, RATE, FPS, 0, 2, shift_s=-0.04)
    assert not before_start[:PER_FRAME].any() and np.array_equal(before_start[PER_FRAME:], audio[:PER_FRAME])
