"""ShardDataset over a real shard folder: lazy handles, pickling, DataLoader under fork and spawn, errors."""

from __future__ import annotations

import json
import pickle

import multiprocessing as mp

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flowprep.dataset import ShardDataset
from flowprep.errors import FlowprepError
from flowprep.shards import Manifest, write_shard
from tests.shards.test_writer import ATTRS, _result


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(3)
    m = Manifest(config={}, config_fingerprint="abc", src="/src", layout="lrw", classes=["A", "B", "C"])
    clip = 0
    for k in range(3):  # three shards of four clips
        results = [_result(clip + j, 29, rng) for j in range(4)]
        clip += 4
        s = write_shard(root, f"train-{k:05d}.h5", "train", f"p{k}", results, ATTRS)
        m.commit(s.entry, root)
    m.planned_clips = clip
    m.save(root)
    return root


def test_length_and_classes_without_opening_shards(shard_dir):
    ds = ShardDataset(shard_dir, split="train")
    assert len(ds) == 12 and ds.classes == ["A", "B", "C"]
    assert ds.open_shards == []  # nothing opened yet


def test_items_in_order_with_types(shard_dir):
    ds = ShardDataset(shard_dir, split="train", streams=("gray", "flow", "landmarks"))
    ids = [ds[i]["clip_id"] for i in range(len(ds))]
    assert ids == sorted(ids) and len(set(ids)) == 12
    s = ds[5]
    assert s["gray"].dtype == torch.uint8 and s["gray"].shape == (29, 16, 16)
    assert s["flow"].dtype == torch.float32 and s["flow"].shape == (28, 2, 16, 16)
    assert s["landmarks"].shape == (29, 68, 2)
    assert s["label"] == 5 % 3 and s["boundary"].shape == (29,)
    assert ds[-1]["clip_id"] == ids[-1]
    with pytest.raises(IndexError):
        ds[12]


def test_pickles_without_handles(shard_dir):
    ds = ShardDataset(shard_dir)
    ds[0]
    assert ds.open_shards == ["train-00000.h5"]
    again = pickle.loads(pickle.dumps(ds))
    assert again.open_shards == []
    assert torch.equal(again[3]["gray"], ds[3]["gray"])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_workers(shard_dir, method):
    ds = ShardDataset(shard_dir)
    ds[0]  # a handle opened in the parent must not leak into the workers
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=mp.get_context(method))
    seen = []
    for batch in loader:
        assert batch["gray"].shape == (4, 29, 16, 16)
        assert batch["flow"].shape == (4, 28, 2, 16, 16)
        seen += batch["clip_id"]
    assert seen == [ds[i]["clip_id"] for i in range(len(ds))]


def test_clear_errors(shard_dir, tmp_path):
    with pytest.raises(FlowprepError, match="not a folder"):
        ShardDataset(tmp_path / "nope")
    with pytest.raises(FlowprepError, match="manifest.json not found"):
        ShardDataset(tmp_path)
    with pytest.raises(FlowprepError, match=r"split 'val' not in .*\(splits: train\)"):
        ShardDataset(shard_dir, split="val")
    newer = tmp_path / "newer"
    newer.mkdir()
    data = json.loads((shard_dir / "manifest.json").read_text())
    data["format_version"] = 99
    (newer / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(FlowprepError, match="upgrade flowprep"):
        ShardDataset(newer)


def test_manifest_statistics(shard_dir):
    stats = Manifest.load(shard_dir).stats("train")
    # uniform random bytes: mean ~0.5, std ~0.289; uniform int8 flow * 0.1: std ~7.3 px
    assert stats["gray_mean"] == pytest.approx(0.5, abs=0.01)
    assert stats["gray_std"] == pytest.approx(0.2887, abs=0.01)
    assert stats["flow_std"] == pytest.approx(7.33, abs=0.1)


def test_pad_collate_variable_and_fixed_lengths():
    from flowprep.dataset import pad_collate

    def sample(t):
        return {"gray": torch.ones(t, 4, 4, dtype=torch.uint8), "flow": torch.ones(t - 1, 2, 4, 4),
                "boundary": torch.ones(t), "label": 1, "clip_id": f"c{t}"}

    batch = pad_collate([sample(5), sample(3)])
    assert batch["lengths"].tolist() == [5, 3]
    assert batch["gray"].shape == (2, 5, 4, 4) and batch["flow"].shape == (2, 4, 2, 4, 4)
    assert batch["gray"][1, 3:].sum() == 0 and batch["flow"][1, 2:].sum() == 0 and batch["gray"][1, :3].all()
    assert batch["clip_id"] == ["c5", "c3"] and batch["label"].tolist() == [1, 1]
    fixed = pad_collate([sample(4), sample(4)])
    assert fixed["gray"].shape == (2, 4, 4, 4) and fixed["lengths"].tolist() == [4, 4]


def test_damaged_shard_is_named(shard_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shard_dir, copy)
    path = copy / "train-00001.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    ds = ShardDataset(copy)
    ds[0]  # other shards still read
    with pytest.raises(FlowprepError, match=r"train-00001\.h5.*flowprep verify"):
        ds[5]


def test_stored_flow_batches_back_to_pixels(shard_dir):
    from flowprep.dataset import flow_to_pixels, pad_collate

    pixels = ShardDataset(shard_dir)
    stored = ShardDataset(shard_dir, flow_dtype="stored")
    assert stored[2]["flow"].dtype == torch.int8 and stored[2]["flow_scale"] == pytest.approx(0.1)
    batch = pad_collate([stored[i] for i in range(4)])
    assert torch.allclose(flow_to_pixels(batch), torch.stack([pixels[i]["flow"] for i in range(4)]))
    half = ShardDataset(shard_dir, flow_dtype="float16")[2]["flow"]
    assert half.dtype == torch.float16 and torch.allclose(half.float(), pixels[2]["flow"], atol=0.01)


def test_checksum_checked_on_request(shard_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shard_dir, copy)
    path = copy / "train-00002.h5"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit, in a place that may well still read
    path.write_bytes(bytes(data))
    ds = ShardDataset(copy, check_sha256=True)
    assert ds[0]["clip_id"]  # intact shards read
    with pytest.raises(FlowprepError, match=r"train-00002\.h5 fails its sha256 check.*flowprep verify"):
        ds[9]


def test_repr_says_what_the_dataset_is(shard_dir):
    from flowprep.transforms import Compose, Normalize, RandomCrop

    ds = ShardDataset(shard_dir, split="train")
    head, streams = repr(ds).splitlines()
    assert head == f"ShardDataset({str(shard_dir)!r}, split='train': 12 clips in 3 shard(s), 3 classes)"
    assert streams == "  streams: gray, flow (flow float32)"
    aug = Compose([RandomCrop(8, seed=0), Normalize(0.5, 0.25, 2.0)])
    ds = ShardDataset(shard_dir, streams=("gray", "landmarks"), transform=aug)
    assert repr(ds).splitlines()[1] == "  streams: gray, landmarks; transform: Compose(RandomCrop, Normalize)"
    assert ds.open_shards == []  # repr opens nothing


def test_repr_of_unlabelled_folder(shard_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shard_dir, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["classes"] = []
    (copy / "manifest.json").write_text(json.dumps(data))
    assert "12 clips in 3 shard(s), no classes (unlabelled))" in repr(ShardDataset(copy, flow_dtype="stored"))
