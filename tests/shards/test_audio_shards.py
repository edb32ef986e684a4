"""Audio in the shard format: written with its own offsets, read back per clip, checked by verify;
shards without audio read as before."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from flowprep.dataset import ShardFile
from flowprep.errors import FlowprepError
from flowprep.shards import Manifest, write_shard
from flowprep.shards.layout import FORMAT_VERSION
from flowprep.shards.verify import verify
from tests.shards.test_writer import ATTRS, _result

RATE = 16000


def _with_audio(i: int, frames: int, rng, fps: float = 25.0):
    r = _result(i, frames, rng)
    r.fps = fps
    r.audio = rng.integers(-20000, 20000, int(round(frames * RATE / fps))).astype(np.int16)
    r.audio_rate = RATE
    return r


def _folder(root, results_per_shard, audio: bool) -> Manifest:
    m = Manifest(config={"audio": True, "audio_rate": RATE} if audio else {}, config_fingerprint="abc",
                 src="/src", layout="folder", classes=["A", "B", "C"])
    for k, results in enumerate(results_per_shard):
        m.commit(write_shard(root, f"train-{k:05d}.h5", "train", f"p{k}", results, ATTRS).entry, root)
    m.planned_clips = sum(len(r) for r in results_per_shard)
    m.save(root)
    return m


def test_audio_round_trips_with_its_own_offsets(tmp_path):
    rng = np.random.default_rng(0)
    results = [_with_audio(0, 29, rng), _with_audio(1, 75, rng), _with_audio(2, 3, rng, fps=29.97)]
    write_shard(tmp_path, "train-00000.h5", "train", "p", results, ATTRS)
    with h5py.File(tmp_path / "train-00000.h5", "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION == 1  # an optional dataset needs no new version
        assert f.attrs["audio_rate"] == RATE and f.attrs["audio_dtype"] == "int16"
        assert f["audio"].dtype == np.int16 and f["audio"].shape == (sum(len(r.audio) for r in results),)
        np.testing.assert_array_equal(f["audio_offset"][()], np.cumsum([0] + [len(r.audio) for r in results]))
        np.testing.assert_array_equal(f["audio_start"][()], [0, 0, 0])
    with ShardFile(tmp_path / "train-00000.h5") as shard:
        assert shard.has_audio and shard.audio_rate == RATE
        for i, r in enumerate(results):
            clip = shard.clip(i, ("gray", "audio", "landmarks"))
            np.testing.assert_array_equal(clip["audio"], r.audio)
            assert clip["audio_rate"] == RATE
            assert clip["landmarks"].shape == (r.num_frames, 68, 2)  # the keypoint stream, in crop pixels
        assert len(shard.clip(2, ("audio",))["audio"]) == round(3 * RATE / 29.97)


def test_audio_start_is_honoured(tmp_path):
    """A writer may keep audio before frame 0: readers return the samples from frame 0 on."""
    rng = np.random.default_rng(1)
    r = _with_audio(0, 10, rng)
    write_shard(tmp_path, "train-00000.h5", "train", "p", [r], ATTRS)
    with h5py.File(tmp_path / "train-00000.h5", "r+") as f:
        f["audio_start"][0] = 100
    with ShardFile(tmp_path / "train-00000.h5") as shard:
        np.testing.assert_array_equal(shard.audio(0), r.audio[100:])


def test_shards_without_audio_read_as_before(tmp_path):
    rng = np.random.default_rng(2)
    results = [_result(0, 5, rng)]
    write_shard(tmp_path, "train-00000.h5", "train", "p", results, ATTRS)
    with h5py.File(tmp_path / "train-00000.h5", "r") as f:
        assert not {"audio", "audio_offset", "audio_start", "audio_rate"} & (set(f) | set(f.attrs))
    with ShardFile(tmp_path / "train-00000.h5") as shard:
        assert not shard.has_audio
        assert shard.clip(0, ("gray", "flow"))["gray"].shape == (5, 16, 16)
        with pytest.raises(FlowprepError, match="holds no audio.*--audio"):
            shard.clip(0, ("gray", "audio"))


def test_all_clips_of_a_shard_carry_audio_or_none(tmp_path):
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="without audio"):
        write_shard(tmp_path, "train-00000.h5", "train", "p", [_with_audio(0, 5, rng), _result(1, 5, rng)], ATTRS)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_verify_checks_audio(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "shards"
    root.mkdir()
    _folder(root, [[_with_audio(0, 29, rng), _with_audio(1, 75, rng)], [_with_audio(2, 29, rng)]], audio=True)
    assert verify(root) == []
    # damage that keeps the file's size: an offset, then a sample count that no longer spans the frames
    with h5py.File(root / "train-00000.h5", "r+") as f:
        f["audio_offset"][1] += 7
    problems = verify(root, checksums=False)
    assert problems == ["train-00000.h5: audio of 2 clip(s) does not span their frames at 16000 Hz "
                        "(first: W/train/W_00000, 18567 samples for 29 frames)"]
    with h5py.File(root / "train-00000.h5", "r+") as f:
        f["audio_offset"][1] -= 7
        f["audio_offset"][2] += 1
    assert verify(root, checksums=False) == [
        "train-00000.h5: audio offsets do not match the 66560 stored samples of 2 clips"]


def test_verify_wants_audio_when_the_build_asked_for_it(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "shards"
    root.mkdir()
    m = _folder(root, [[_result(0, 5, rng)]], audio=False)
    assert verify(root) == []  # an old build without audio
    m.config = {"audio": True, "audio_rate": RATE}
    m.save(root)
    assert verify(root) == ["train-00000.h5: dataset 'audio' missing (the build asked for --audio)"]
