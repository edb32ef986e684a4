"""A shard folder tells the truth: one build at a time, an incomplete folder says so, names from a
manifest stay inside the folder, writes are all-or-nothing and the first committed shard stays."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import flowprep.files
from flowprep.cli import main as cli_main
from flowprep.dataset import ShardDataset
from flowprep.errors import FlowprepError
from flowprep.files import AtomicFile, file_sha256
from flowprep.shards import Manifest, write_shard
from flowprep.shards.lock import LOCK_NAME, BuildLock
from flowprep.shards.stats import shard_stats
from flowprep.shards.verify import verify
from tests.dataset.test_shard_dataset import shard_dir  # noqa: F401  (the fixture)
from tests.shards.test_writer import ATTRS, _result


@pytest.fixture
def copy(shard_dir, tmp_path):  # noqa: F811
    dst = tmp_path / "shards"
    shutil.copytree(shard_dir, dst)
    return dst


# ---- one build per folder ---------------------------------------------------------------------
def test_a_second_lock_on_a_held_folder_is_refused_naming_the_holder(tmp_path):
    with BuildLock(tmp_path) as first:
        with pytest.raises(FlowprepError, match=rf"being written by another build \(host .*, PID {os.getpid()}, "
                                                rf"alive, build {first.build_id}"):
            BuildLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released cleanly: names nobody
    with BuildLock(tmp_path) as again:
        assert again.previous is None  # a clean release is not a dead holder


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_warning(tmp_path, caplog):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from flowprep.shards.lock import BuildLock; "
                               "BuildLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FlowprepError, match=f"PID {holder.pid}, alive"):
        BuildLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.WARNING), BuildLock(tmp_path) as lock:
        assert lock.previous["pid"] == holder.pid
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"left locked by a build that is gone (host {lock.previous['host']}, PID {holder.pid}, not running" \
        in caplog.text


# ---- complete or say so -----------------------------------------------------------------------
def _make_incomplete(root, missing: int = 4) -> None:
    m = Manifest.load(root)
    m.planned_clips += missing  # the plan had more clips than were committed when the build stopped
    m.save(root)


def test_an_incomplete_folder_fails_verify_and_is_refused_by_readers(copy, capsys):
    _make_incomplete(copy)
    problems = verify(copy)
    assert problems == ["incomplete build: 4 of 16 planned clips are neither stored (12) nor recorded as failed (0); "
                        "rerun the same `flowprep build` command to resume it"]
    assert cli_main(["verify", str(copy)]) == 1
    with pytest.raises(FlowprepError, match=r"incomplete build: 4 of 16 planned clips are missing.*"
                                            r"allow_incomplete=True to use the 12 clips"):
        ShardDataset(copy, split="train")
    assert len(ShardDataset(copy, split="train", allow_incomplete=True)) == 12
    with pytest.raises(FlowprepError, match="4 of 16 planned clips are missing.*--allow-incomplete"):
        shard_stats(copy)
    assert cli_main(["stats", str(copy)]) == 2
    assert "--allow-incomplete" in capsys.readouterr().err
    assert cli_main(["stats", str(copy), "--allow-incomplete"]) == 0
    assert "INCOMPLETE: 4 planned clips are missing" in capsys.readouterr().out


def test_a_shard_the_manifest_does_not_list_fails_verify_with_advice_that_works(copy):
    shutil.copy(copy / "train-00002.h5", copy / "train-00007.h5")
    assert verify(copy) == ["train-00007.h5: a shard the manifest does not list (left by an interrupted or an earlier "
                            "build); rerun the same `flowprep build` command: it removes shards the current plan "
                            "does not contain"]


def test_no_checksums_says_content_was_not_checked(copy, capsys):
    import h5py

    path = copy / "train-00001.h5"
    with h5py.File(path, "r") as f:
        chunk = f["gray"].id.get_chunk_info(0)  # where the first clip's pixels lie in the file
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset + chunk.size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cli_main(["verify", str(copy), "--no-checksums"]) == 0  # pixels are not read without checksums
    err = capsys.readouterr().err
    assert "sha256 NOT checked (--no-checksums)" in err
    assert cli_main(["verify", str(copy)]) == 1


def test_failures_jsonl_that_disagrees_with_the_manifest_fails_verify(copy):
    (copy / "failures.jsonl").write_text('{"clip_id": "ghost"}\n')
    assert verify(copy) == ["failures.jsonl: disagrees with the failures in manifest.json (a crash between their "
                            "writes); rerun the same `flowprep build` command: it rewrites failures.jsonl from the "
                            "manifest"]


@pytest.mark.parametrize("name", ["../elsewhere/train-00000.h5", "/etc/train-00000.h5", "sub/train-00000.h5",
                                  "..", ".train-00000.h5", "train-00000.h5\0x", 7])
def test_shard_names_in_a_manifest_must_be_plain_file_names(copy, name):
    data = json.loads((copy / "manifest.json").read_text())
    data["shards"][0]["name"] = name
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(FlowprepError, match="not a plain shard file name in its folder"):
        Manifest.load(copy)
    with pytest.raises(FlowprepError, match="not a plain shard file name"):
        ShardDataset(copy, split="train")


# ---- crash-safe commits -------------------------------------------------------------------------
class _FullDisk:
    """open() for flowprep.files whose files take no byte: every write fails as on a full disk."""

    def __init__(self):
        self.opened = []

    def __call__(self, path, mode="r"):
        self.opened.append(str(path))
        return _FullFile(open(path, mode))


class _FullFile:
    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_a_full_disk_while_saving_the_manifest_leaves_the_old_one_and_no_temporary(copy, monkeypatch):
    before = (copy / "manifest.json").read_bytes()
    full = _FullDisk()
    monkeypatch.setattr(flowprep.files, "open", full, raising=False)
    m = Manifest.load(copy)
    with pytest.raises(FlowprepError) as info:
        m.save(copy)
    monkeypatch.undo()
    assert full.opened and all(os.path.basename(p).startswith(".manifest.json.") for p in full.opened)
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message and "rerun the same command" in message
    assert (copy / "manifest.json").read_bytes() == before
    assert not [p.name for p in copy.iterdir() if p.name.endswith(".tmp")]


def test_temporaries_are_unpredictable_and_never_follow_a_planted_link(tmp_path, monkeypatch):
    names = {AtomicFile(tmp_path / "manifest.json").tmp.name for _ in range(20)}
    assert len(names) == 20
    victim = tmp_path / "victim"
    victim.write_text("keep")
    monkeypatch.setattr(flowprep.files.secrets, "token_hex", lambda n: "0" * (2 * n))  # a guessed name
    planted = AtomicFile(tmp_path / "manifest.json").tmp
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        flowprep.files.atomic_write_text(tmp_path / "manifest.json", "{}")
    assert victim.read_text() == "keep" and not (tmp_path / "manifest.json").exists()


def test_same_clips_give_the_same_bytes(tmp_path):
    """What byte-identical resume rests on: the writer adds nothing that varies (no times, no ids)."""
    rng = np.random.default_rng(5)
    results = [_result(i, 29, rng) for i in range(3)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_shard(tmp_path / "a", "train-00000.h5", "train", "p", results, ATTRS)
    b = write_shard(tmp_path / "b", "train-00000.h5", "train", "p", results, ATTRS)
    assert a.entry.sha256 == b.entry.sha256 == file_sha256(tmp_path / "b" / "train-00000.h5")


def test_a_retried_writer_keeps_the_committed_shard(tmp_path):
    """Ray reruns a writer whose worker died after placing the file; PWC-Net on CUDA may hand the retry
    flow that differs in the last bits. The file in place stays, and the retry describes it."""
    rng = np.random.default_rng(6)
    results = [_result(i, 29, rng) for i in range(3)]
    first = write_shard(tmp_path, "train-00000.h5", "train", "p", results, ATTRS)
    committed = (tmp_path / "train-00000.h5").read_bytes()
    for r in results:
        r.flow = np.clip(r.flow.astype(np.int16) + 1, -127, 127).astype(np.int8)  # the retry's flow differs
    retry = write_shard(tmp_path, "train-00000.h5", "train", "p", results, ATTRS)
    assert (tmp_path / "train-00000.h5").read_bytes() == committed
    assert retry.entry.sha256 == first.entry.sha256 == file_sha256(tmp_path / "train-00000.h5")
    assert (retry.entry.clips, retry.entry.frames, retry.entry.bytes) == (3, 87, len(committed))
    assert retry.entry.moments == pytest.approx(first.entry.moments, rel=1e-12)  # the file's, not the retry's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-00000.h5"]
    with pytest.raises(FlowprepError, match="from another plan or config"):
        write_shard(tmp_path, "train-00000.h5", "train", "other-plan", results, ATTRS)
    assert (tmp_path / "train-00000.h5").read_bytes() == committed


def test_the_folder_is_flushed_after_the_file_is_in_place(tmp_path, monkeypatch):
    seen = []
    real = flowprep.files.fsync_dir
    monkeypatch.setattr(flowprep.files, "fsync_dir",
                        lambda folder: (seen.append((str(folder), (tmp_path / "x.json").exists())), real(folder)))
    flowprep.files.atomic_write_text(tmp_path / "x.json", "{}")
    assert seen == [(str(tmp_path), True)]


ROOT = str(Path(__file__).resolve().parents[2])
FULL_TMPFS = """
import json, os, subprocess, sys
from flowprep.errors import FlowprepError
from flowprep.shards import Manifest, ShardEntry
os.makedirs("/mnt/out", exist_ok=True)
m = Manifest(config={"pad": "x" * 200_000}, config_fingerprint="f", src="/s", layout="lrw", planned_clips=1)
try:
    m.save("/mnt/out")
    print(json.dumps({"saved": True}))
except FlowprepError as exc:
    left = sorted(os.listdir("/mnt/out"))
    subprocess.run(["mount", "-o", "remount,size=1m", "/mnt"], check=True)  # space freed
    m.save("/mnt/out")
    print(json.dumps({"error": str(exc), "left": left, "after": sorted(os.listdir("/mnt/out")),
                      "loaded": Manifest.load("/mnt/out").planned_clips}))
"""


def test_a_really_full_disk_leaves_no_temporary(tmp_path):
    """The same on a real filesystem: a 64 KiB tmpfs in a user and mount namespace of this test's own."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True).returncode:
        pytest.skip("this kernel or container forbids user namespaces; "
                    "test_a_full_disk_while_saving_the_manifest_leaves_the_old_one_and_no_temporary injects it")
    script = tmp_path / "full.py"
    script.write_text(FULL_TMPFS)
    run = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs /mnt && "
                                                       f"{sys.executable} {script}"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "No space left on device" in result["error"] and "\n" not in result["error"]
    assert result["left"] == []  # neither manifest.json nor a temporary
    assert result["after"] == ["failures.jsonl", "manifest.json"] and result["loaded"] == 1
