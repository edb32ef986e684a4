"""A disk that fills up while the manifest is written: one line, exit 2, no temporaries, and a
rerun resumes. The full disk is injected into the driver's writes (the shard writers run in Ray's
worker processes, out of a monkeypatch's reach); the manifest is the driver's to write."""

from __future__ import annotations

import errno
import json
import os

import flowprep.files
from flowprep.cli import main as cli_main
from flowprep.errors import EXIT_FATAL, EXIT_OK


class _FillsUp:
    """open() for flowprep.files: a manifest that records a shard does not fit on the disk any more."""

    def __init__(self):
        self.refused = 0

    def __call__(self, path, mode="r"):
        return _File(open(path, mode), self, os.path.basename(path).startswith(".manifest.json."))


class _File:
    def __init__(self, fh, disk: _FillsUp, manifest: bool):
        self.fh, self.disk, self.manifest = fh, disk, manifest

    def write(self, data: bytes) -> int:
        if self.manifest and json.loads(data)["shards"]:
            self.disk.refused += 1
            self.fh.write(data[: len(data) // 2])  # what fitted before the disk was full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.fh.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_disk_full_while_committing_exits_2_leaves_no_temporaries_and_resumes(tmp_path, lrw_tree, monkeypatch,
                                                                              capsys):
    out = tmp_path / "out"
    cmd = ["build", "--src", str(lrw_tree), "--out", str(out), "--flow", "dis", "--limit", "2", "--shard-size", "1",
           "--workers", "2", "--no-progress"]
    disk = _FillsUp()
    monkeypatch.setattr(flowprep.files, "open", disk, raising=False)
    assert cli_main(cmd) == EXIT_FATAL
    monkeypatch.undo()
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("flowprep:")]
    assert disk.refused == 1
    assert len(err) == 1 and "No space left on device" in err[0] and "rerun the same command" in err[0], err
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert json.loads((out / "manifest.json").read_text())["shards"] == []  # the last manifest that fitted
    assert cli_main(["verify", str(out)]) == 1  # incomplete, and it says so

    assert cli_main(cmd) == EXIT_OK
    assert cli_main(["verify", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["totals"]["clips"] == 2
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
