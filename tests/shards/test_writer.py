"""The writer and manifest on synthetic clip results: layout, atomicity, round trip through the reader."""

import json

import h5py
import numpy as np
import pytest

from flowprep.dataset import ShardFile
from flowprep.errors import FlowprepError
from flowprep.shards import ClipFailure, ClipResult, Manifest, ShardEntry, write_shard
from flowprep.sources import ClipRecord

ATTRS = {"roi_size": 16, "flow_dtype": "int8", "flow_scale": 0.1, "config_fingerprint": "abc"}


def _result(i: int, frames: int, rng) -> ClipResult:
    rec = ClipRecord(f"W/train/W_{i:05d}", f"/v/{i}.mp4", "train", i % 3, "W", "lrw", (0.2, 0.6))
    flow = rng.integers(-127, 128, (frames - 1, 2, 16, 16)).astype(np.int8)
    return ClipResult(
        record=rec,
        gray=rng.integers(0, 256, (frames, 16, 16)).astype(np.uint8),
        landmarks=rng.uniform(0, 16, (frames, 68, 2)).astype(np.float32),
        affine=np.tile(np.eye(2, 3, dtype=np.float32), (frames, 1, 1)),
        qc={"detection_rate": 1.0, "jitter_px": 0.1 * i},
        fps=25.0,
        flow=flow,
        timings={"decode_s": 0.01},
        node="n1",
    )


@pytest.mark.parametrize("compression", ["lz4hc", "zstd", "gzip", "none"])
def test_variable_length_clips_round_trip(tmp_path, compression):
    rng = np.random.default_rng(0)
    results = [_result(i, t, rng) for i, t in enumerate([29, 75, 2, 1])]
    failure = ClipFailure(ClipRecord("W/train/bad", "/v/bad.mp4", "train", 0, "W", "lrw", None), "decode", "empty file")
    summary = write_shard(tmp_path, "train-00000.h5", "train", "plan1", results + [failure], ATTRS, compression, 3)
    assert summary.entry.clips == 4 and summary.entry.frames == 29 + 75 + 2 + 1
    assert summary.entry.failures == [failure.to_json()]
    assert summary.nodes == {"n1": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-00000.h5"]  # no temporary left behind
    with ShardFile(tmp_path / "train-00000.h5") as shard:
        assert len(shard) == 4
        for i, r in enumerate(results):
            clip = shard.clip(i, ("gray", "flow", "landmarks", "affine"))
            assert clip["clip_id"] == r.record.clip_id and clip["label"] == r.record.label
            np.testing.assert_array_equal(clip["gray"], r.gray)
            assert clip["flow"].dtype == np.float32
            np.testing.assert_allclose(clip["flow"], r.flow.astype(np.float32) * 0.1, atol=1e-6)
            np.testing.assert_allclose(clip["landmarks"], r.landmarks, atol=0.01)
            assert clip["qc"]["jitter_px"] == pytest.approx(0.1 * i)
            # boundary 0.2..0.6 s at 25 fps: frames whose centre lies inside
            mask = clip["boundary"]
            assert mask.shape == (r.num_frames,)
            centres = (np.arange(r.num_frames) + 0.5) / 25
            np.testing.assert_array_equal(mask, ((centres >= 0.2) & (centres <= 0.6)).astype(np.float32))


def test_empty_shard_when_every_clip_failed(tmp_path):
    rec = ClipRecord("a", "/a.mp4", "train", 0, "", "folder", None)
    summary = write_shard(tmp_path, "train-00000.h5", "train", "p", [ClipFailure(rec, "roi", "no face")], ATTRS)
    assert summary.entry.clips == 0 and summary.entry.failed == 1
    with h5py.File(tmp_path / "train-00000.h5") as f:
        assert f["gray"].shape == (0, 16, 16) and f["flow"].shape == (0, 2, 16, 16)


def test_failed_write_leaves_nothing(tmp_path):
    rng = np.random.default_rng(1)
    bad = _result(0, 5, rng)
    bad.flow = None  # a clip that skipped the flow stage must never produce a shard
    with pytest.raises(ValueError):
        write_shard(tmp_path, "train-00000.h5", "train", "p", [bad], ATTRS)
    assert list(tmp_path.iterdir()) == []


def test_manifest_commit_save_load(tmp_path):
    m = Manifest(config={"a": 1}, config_fingerprint="f", src="/src", layout="lrw", planned_clips=3)
    m.commit(ShardEntry("train-00001.h5", "train", 1, 29, 100, "s1", "h1"), tmp_path)
    m.commit(ShardEntry("train-00000.h5", "train", 1, 29, 100, "s0", "h0",
                        failures=[{"clip_id": "x", "stage": "roi", "reason": "no face"}]), tmp_path)
    again = Manifest.load(tmp_path)
    assert [s.name for s in again.shards] == ["train-00000.h5", "train-00001.h5"]
    assert again.complete and again.totals()["failed"] == 1
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["totals"]["clips"] == 2 and data["splits"]["train"]["frames"] == 58
    lines = (tmp_path / "failures.jsonl").read_text().splitlines()
    assert [json.loads(x)["clip_id"] for x in lines] == ["x"]


def test_manifest_from_newer_format_is_refused(tmp_path):
    Manifest(config={}, config_fingerprint="f", src="/s", layout="lrw", format_version=99).save(tmp_path)
    with pytest.raises(FlowprepError, match="upgrade flowprep"):
        Manifest.load(tmp_path)
    with pytest.raises(FlowprepError, match="not found"):
        Manifest.load(tmp_path / "nowhere")
