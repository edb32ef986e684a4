"""A shard folder written by an earlier flowprep (tests/fixtures/shards_v1, format 1, made by
tests/fixtures/make_shards_v1.py at commit cebb393) is read, verified and trained on by this one,
and reads back exactly what the old reader returned: the digests below were taken with it."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from flowprep import ShardDataset
from flowprep.cli import main as cli_main
from flowprep.shards.verify import verify
from flowprep.train import TrainConfig, train

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "shards_v1"
STREAMS = ("gray", "flow", "landmarks", "affine", "audio")
# sha256 over every clip of the split as the reader of format 1's first writer returned it (see _digest)
OLD_READER = {
    "train": "41e448a2f47fb9de575bfb16327162e62908c21e4363001be3c316730b7fd78d",
    "val": "f7d405a39283c8dfa4d7fe57456cb75621922dc6ee95a95e3710903bf97675bc",
}


@pytest.fixture
def old_folder(tmp_path) -> Path:
    """A copy, so nothing a test does can touch the checked-in bytes."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "shards_v1"))


# Sample fields added after the old reader, derived from what the old folder stores (``words`` is
# ``word_times`` parsed): left out of the digest, checked on their own below.
LATER_FIELDS = ("words",)


def _digest(ds: ShardDataset) -> str:
    """Every stream's bytes, dtype and shape and every per-clip field of every clip, in order."""
    h = hashlib.sha256()
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["words"] == []  # the old folder has no word timings
        for key in sorted(set(sample) - set(LATER_FIELDS)):
            value = sample[key]
            if isinstance(value, torch.Tensor):
                value = value.numpy()
            if isinstance(value, np.ndarray):
                h.update(f"{key} {value.dtype} {value.shape}".encode())
                h.update(np.ascontiguousarray(value).tobytes())
            else:
                h.update(f"{key} {json.dumps(value, sort_keys=True)}".encode())
    return h.hexdigest()


def test_the_old_folder_reads_as_it_did(old_folder):
    for split, clips in (("train", 2), ("val", 1)):
        ds = ShardDataset(old_folder, split, streams=STREAMS)
        assert len(ds) == clips and ds.classes == ["bin", "lay"]
        s = ds[0]
        assert s["gray"].dtype == torch.uint8 and s["gray"].shape == (12, 48, 48)
        assert s["flow"].dtype == torch.float32 and s["flow"].shape == (11, 2, 48, 48)
        assert s["landmarks"].shape == (12, 68, 2) and s["affine"].shape == (12, 2, 3)
        assert s["audio"].dtype == torch.int16 and s["audio"].shape == (12 * 640,) and s["audio_rate"] == 16000
        assert _digest(ds) == OLD_READER[split], split
    train_ids = [ShardDataset(old_folder, "train")[i]["clip_id"] for i in range(2)]
    assert train_ids == ["train/bin/bbaf2n", "train/lay/lbax4n"]
    failures = [json.loads(line) for line in (old_folder / "failures.jsonl").read_text().splitlines()]
    assert [(f["clip_id"], f["stage"]) for f in failures] == [("train/lay/lrwp9a", "decode")]


def test_the_old_folder_verifies(old_folder):
    assert verify(old_folder) == []
    assert cli_main(["verify", str(old_folder)]) == 0


def test_a_model_trains_on_the_old_folder(old_folder, tmp_path):
    config = TrainConfig(shards=str(old_folder), out=str(tmp_path / "run"), epochs=1, batch_size=2, width=0.0625,
                         hidden=16, dropout=0.0, warmup_epochs=0, crop=40, workers=0, progress=False)
    summary = train(config)
    assert summary["step"] == 1 and len(summary["step_losses"]) == 1
    assert math.isfinite(summary["step_losses"][0]) and summary["step_losses"][0] > 0
    assert summary["val_top1"] in (0.0, 1.0)  # the one val clip was evaluated
    assert (tmp_path / "run" / "last.pt").is_file()


def test_the_writer_still_writes_what_the_old_one_wrote(tmp_path):
    """Same datasets, dtypes and ranks as the old writer's shard (with audio); attributes alike."""
    import h5py

    from tests.shards.test_audio_shards import _folder, _with_audio

    def layout_of(path: Path) -> tuple[dict, set]:
        found: dict = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: found.__setitem__(
                name, (obj.dtype.kind if h5py.check_string_dtype(obj.dtype) else str(obj.dtype), obj.ndim)
                if isinstance(obj, h5py.Dataset) else "group") if not name.startswith("qc/") else None)
            return found, set(f.attrs)

    _folder(tmp_path, [[_with_audio(0, 12, np.random.default_rng(0))]], audio=True)
    old, old_attrs = layout_of(FIXTURE / "train-00000.h5")
    new, new_attrs = layout_of(tmp_path / "train-00000.h5")
    assert new == old
    # the build passes flow_backend, and the old writer set the rest itself
    assert new_attrs | {"flow_backend"} == old_attrs
