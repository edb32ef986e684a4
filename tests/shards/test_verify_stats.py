"""`flowprep verify` finds each kind of damage and names it; `flowprep stats` counts right."""

from __future__ import annotations

import shutil

import pytest

from flowprep.cli import main as cli_main
from flowprep.shards.stats import format_stats, shard_stats
from flowprep.shards.verify import verify
from tests.dataset.test_shard_dataset import shard_dir  # noqa: F401  (the fixture)


@pytest.fixture
def copy(shard_dir, tmp_path):  # noqa: F811
    dst = tmp_path / "shards"
    shutil.copytree(shard_dir, dst)
    return dst


def test_clean_folder_verifies(copy, capsys):
    assert verify(copy) == []
    assert cli_main(["verify", str(copy)]) == 0
    assert "OK" in capsys.readouterr().err


def test_flipped_byte(copy, capsys):
    path = copy / "train-00001.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = verify(copy)
    assert problems == ["train-00001.h5: sha256 differs from the manifest (the file was modified or corrupted)"]
    assert cli_main(["verify", str(copy)]) == 1
    assert "BAD train-00001.h5: sha256" in capsys.readouterr().out


def test_truncated_missing_and_extra(copy):
    path = copy / "train-00000.h5"
    path.write_bytes(path.read_bytes()[:1000])
    (copy / "train-00002.h5").unlink()
    (copy / "notes.txt").write_text("hello")
    (copy / ".train-00003.h5.1234abcd.tmp").write_bytes(b"x")
    problems = verify(copy)
    assert any(p.startswith("train-00000.h5: 1000 bytes, the manifest says") for p in problems)
    assert "train-00002.h5: missing (listed in the manifest)" in problems
    assert "notes.txt: unknown file in a shard folder" in problems
    assert any(p.startswith(".train-00003.h5.1234abcd.tmp: a temporary file") for p in problems)
    assert len(problems) == 4


def test_contents_checked_even_when_checksums_agree(copy):
    """A shard rewritten wrongly *and* re-registered in the manifest is still caught by its contents."""
    import h5py

    from flowprep.shards import Manifest
    from flowprep.files import file_sha256

    path = copy / "train-00001.h5"
    with h5py.File(path, "a") as f:
        del f["offset"]
        f["offset"] = [0, 1, 2, 3, 4]
    m = Manifest.load(copy)
    entry = m.entry("train-00001.h5")
    entry.bytes, entry.sha256 = path.stat().st_size, file_sha256(path)
    m.save(copy)
    problems = verify(copy)
    assert problems == ["train-00001.h5: offsets do not match clip lengths",
                        "train-00001.h5: 4 frames, the manifest says 116"]


def test_stats(shard_dir):  # noqa: F811
    stats = shard_stats(shard_dir)
    assert stats["totals"]["clips"] == 12 and stats["splits"]["train"]["frames"] == 12 * 29
    assert stats["clips_per_label"]["train"] == {"W": 12}
    assert stats["qc"]["detection_rate"]["mean"] == pytest.approx(1.0)
    assert "jitter_px" in format_stats(stats)
