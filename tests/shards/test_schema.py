"""The schema table (flowprep.shards.schema) is the one description of a shard file: the README and
layout's docstring agree with it, and the writer, verify and batch padding follow each of its rows."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from flowprep.dataset import ShardDataset, ShardFile, pad_collate
from flowprep.files import file_sha256
from flowprep.shards import Manifest, layout, schema
from flowprep.shards.schema import (ATTRS, CLIP, FRAME, GROUP, INDEX, PAIR, SAMPLE, SCHEMA, Row, markdown_table,
                                    own_length_keys, rows, time_major_keys)
from flowprep.shards.verify import verify
from tests.shards.test_audio_shards import _folder, _with_audio
from tests.shards.test_writer import _result

README = Path(__file__).resolve().parents[2] / "README.md"
ROI = 16  # tests.shards.test_writer's crops


def test_the_readme_and_the_layout_prose_agree_with_the_table():
    readme = README.read_text()
    assert markdown_table() in readme  # the README's table is the schema, row for row
    assert all(name in readme for name, _ in ATTRS)
    assert [row.name for row in SCHEMA if not re.search(rf"(?<![\w/]){row.name}(?!\w)", layout.__doc__)] == []


def test_a_written_shard_holds_each_row_as_the_table_says(tmp_path):
    rng = np.random.default_rng(0)
    results = [_with_audio(0, 29, rng), _with_audio(1, 7, rng)]  # audio: every optional row is written
    _folder(tmp_path, [results], audio=True)
    n, frames, samples = 2, 29 + 7, sum(len(r.audio) for r in results)
    leading = {CLIP: n, INDEX: n + 1, FRAME: frames, PAIR: frames - n, SAMPLE: samples}
    with h5py.File(tmp_path / "train-00000.h5", "r") as f:
        for row in SCHEMA:
            if row.per == GROUP:
                assert sorted(f[row.name]) == ["detection_rate", "jitter_px"]
                assert all(ds.dtype == row.dtype and ds.shape == (n,) for ds in f[row.name].values())
                continue
            ds = f[row.name]
            dtype = "str" if h5py.check_string_dtype(ds.dtype) else str(ds.dtype)
            assert dtype in row.dtypes, row.name
            assert ds.shape == (leading[row.per],) + row.shape_for(ROI), row.name
    assert verify(tmp_path) == []


@pytest.mark.parametrize("name", [row.name for row in rows((FRAME, PAIR))])
def test_verify_checks_every_stream_of_the_table(tmp_path, name):
    """A stream rewritten with a dtype the table does not allow, and re-registered in the manifest
    (so the checksum agrees), is named by verify."""
    rng = np.random.default_rng(1)
    _folder(tmp_path, [[_with_audio(0, 5, rng)]], audio=True)
    path = tmp_path / "train-00000.h5"
    with h5py.File(path, "a") as f:
        data = f[name][()].astype(np.float64)
        del f[name]
        f[name] = data
    _reregister(tmp_path, "train-00000.h5")
    assert verify(tmp_path) == [f"train-00000.h5: {name} has dtype float64, expected "
                                f"{' or '.join(sorted(next(r.dtypes for r in SCHEMA if r.name == name)))}"]


def test_padding_follows_the_table():
    """Every key that runs along the frames is padded to the longest clip; per-sample streams on
    their own axis, with their own lengths."""
    def sample(t: int) -> dict:
        s = {key: torch.ones(t, 2) for key in time_major_keys()}
        s.update({key: torch.ones(t * 10) for key in own_length_keys()})
        return s | {"clip_id": f"c{t}"}

    batch = pad_collate([sample(3), sample(5)])
    assert batch["lengths"].tolist() == [3, 5]
    for key in time_major_keys():
        assert batch[key].shape == (2, 5, 2) and not batch[key][0, 3:].any(), key
    for key, lengths in own_length_keys().items():
        assert batch[key].shape == (2, 50) and batch[lengths].tolist() == [30, 50]
    assert {"gray", "flow", "landmarks", "affine", "boundary"} <= set(time_major_keys())
    assert own_length_keys() == {"audio": "audio_lengths"}


def _reregister(root: Path, name: str) -> None:
    """Make the manifest describe a shard rewritten in place (so only its contents can tell)."""
    m = Manifest.load(root)
    entry = m.entry(name)
    entry.bytes, entry.sha256 = (root / name).stat().st_size, file_sha256(root / name)
    m.save(root)


def test_a_new_stream_is_one_row_and_its_producer(tmp_path, monkeypatch):
    """A per-frame stream the table does not have: one row, and a producer that sets the clip
    result's field of that name. The writer stores it, the reader serves it, verify checks it and
    padding pads it, with no other change."""
    monkeypatch.setattr(schema, "SCHEMA", SCHEMA + (Row("mouth_open", ("float16",), FRAME, producer="a test"),))
    rng = np.random.default_rng(2)
    results = [_result(0, 5, rng), _result(1, 8, rng)]
    for r in results:  # the producer
        r.mouth_open = rng.uniform(0, 1, r.num_frames).astype(np.float32)
    _folder(tmp_path, [results], audio=False)
    with ShardFile(tmp_path / "train-00000.h5") as shard:
        clip = shard.clip(1, ("gray", "mouth_open"))
    assert clip["mouth_open"].dtype == np.float16
    np.testing.assert_allclose(clip["mouth_open"], results[1].mouth_open, atol=1e-3)
    assert verify(tmp_path) == []
    ds = ShardDataset(tmp_path, streams=("gray", "mouth_open"))
    batch = pad_collate([ds[0], ds[1]])
    assert batch["mouth_open"].shape == (2, 8) and not batch["mouth_open"][0, 5:].any()
    del ds  # closes its handle
    with h5py.File(tmp_path / "train-00000.h5", "a") as f:
        data = f["mouth_open"][:-1]
        del f["mouth_open"]
        f["mouth_open"] = data
    _reregister(tmp_path, "train-00000.h5")
    assert verify(tmp_path) == ["train-00000.h5: mouth_open has shape (12,), expected (13,)"]
