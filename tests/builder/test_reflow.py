"""`flowprep reflow` on real shards: a DIS build of GRID clips (with a cut and an empty video, so the
parent has failures of both kinds) reflowed with Farneback, against a direct Farneback build of the
same clips, on the module's real local Ray cluster."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from flowprep.builder import build, reflow
from flowprep.cli import main as cli_main
from flowprep.config import BuildConfig, FlowConfig
from flowprep.errors import EXIT_FATAL, EXIT_PARTIAL, FlowprepError
from flowprep.shards.lock import BuildLock
from flowprep.shards.manifest import Manifest
from flowprep.shards.verify import verify
from tests import media

README = Path(__file__).resolve().parents[2] / "README.md"
CLIPS = 2  # GRID clips in the source tree (75 frames each)
# with the clips' sound: a reflow carries every per-clip stream, audio included
DIS = BuildConfig(flow=FlowConfig(backend="dis", preset="ultrafast"), shard_size=2, workers=2, audio=True)
FARNEBACK = FlowConfig(backend="farneback")


@pytest.fixture(scope="module")
def grid_src(grid_dir, tmp_path_factory) -> Path:
    """Two GRID clips, a cut copy of one (fails at decode) and an empty one (fails at discovery)."""
    src = tmp_path_factory.mktemp("grid_src")
    clips = media.grid_clips()[:CLIPS]
    for clip in clips:
        shutil.copy(clip, src / clip.name)
    media.cut_file(clips[0], src / "bbaf3n.mpg", 0.3)
    (src / "bbaf4n.mpg").write_bytes(b"")
    return src


@pytest.fixture(scope="module")
def dis_build(grid_src, ray_cluster, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dis")
    report = build(grid_src, out, DIS, progress=False, executor=ray_cluster)
    assert report.complete and report.exit_code == EXIT_PARTIAL and report.clips == CLIPS
    return out


@pytest.fixture(scope="module")
def reflowed(dis_build, ray_cluster, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("reflowed")
    report = reflow(dis_build, out, FARNEBACK, progress=False, executor=ray_cluster)
    return out, report


def _datasets(path: Path) -> dict[str, bytes]:
    """Every dataset of a shard as bytes, by its path in the file (strings joined with NUL)."""
    found: dict[str, bytes] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            is_text = h5py.check_string_dtype(obj.dtype) is not None
            found[name] = "\0".join(obj.asstr()[()]).encode() if is_text else obj[()].tobytes()

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def test_reflow_equals_a_direct_build_with_that_flow(grid_src, dis_build, reflowed, ray_cluster, tmp_path):
    out, report = reflowed
    assert report.complete and report.exit_code == EXIT_PARTIAL and report.clips == CLIPS
    direct = tmp_path / "farneback"
    build(grid_src, direct, DIS.replace(flow=FARNEBACK), progress=False, executor=ray_cluster)
    mine, theirs, parent = Manifest.load(out), Manifest.load(direct), Manifest.load(dis_build)
    assert [s.name for s in mine.shards] == [s.name for s in theirs.shards] == [s.name for s in parent.shards]
    assert len(mine.shards) == 2  # the plan's two shards: a clip and the cut one, then the other clip
    for name in (s.name for s in mine.shards):
        a, b = _datasets(out / name), _datasets(direct / name)
        assert set(a) == set(b) and {"gray", "flow", "landmarks", "affine", "audio", "clip_id", "text"} <= set(a)
        for key in a:
            assert a[key] == b[key], f"{name}: {key} differs from the direct build's"
        assert a["flow"] != _datasets(dis_build / name)["flow"]  # new flow, not the parent's copied
    # the same files, byte for byte (the writer adds nothing that varies between runs)
    assert [s.sha256 for s in mine.shards] == [s.sha256 for s in theirs.shards]
    # the same folder a direct build makes: fingerprint, failures (both of the parent's), totals
    assert mine.config_fingerprint == theirs.config_fingerprint != parent.config_fingerprint
    assert (out / "failures.jsonl").read_text() == (direct / "failures.jsonl").read_text()
    stages = sorted(f["stage"] for f in mine.failures)
    assert stages == ["decode", "discover"] and mine.totals() == theirs.totals()
    assert mine.flow_backend["name"] == "farneback"
    assert mine.parent["folder"] == str(dis_build) and mine.parent["config_fingerprint"] == parent.config_fingerprint
    assert mine.parent["flow_backend"] == "dis"
    assert verify(out) == []


def test_an_interrupted_reflow_resumes_writing_only_what_is_missing(dis_build, reflowed, ray_cluster, tmp_path,
                                                                     capsys):
    done, _ = reflowed
    out = tmp_path / "resumed"
    shutil.copytree(done, out)
    manifest = Manifest.load(out)
    lost = manifest.shards[0].name
    manifest.shards = manifest.shards[1:]  # as if killed before this shard committed
    manifest.save(out)
    (out / lost).unlink()
    (out / f".{lost}.0123456789abcdef.tmp").write_bytes(b"half a shard")  # its writer's temporary
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    assert verify(out)  # incomplete: verify says so

    capsys.readouterr()
    report = reflow(dis_build, out, FARNEBACK, progress=True, executor=ray_cluster)
    assert report.written_shards == 1 and report.skipped_shards == 1 and report.complete
    # the bar counts what is left: the lost shard's clip and its carried failure
    assert re.search(r"reflow: 100%.* 2/2 ", capsys.readouterr().err)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5") if p.name != lost} == kept
    assert (out / lost).read_bytes() == (done / lost).read_bytes()  # the same file as the uninterrupted run
    assert verify(out) == [] and not list(out.glob(".*.tmp"))

    again = reflow(dis_build, out, FARNEBACK, progress=False, executor=ray_cluster)
    assert again.written_shards == 0 and again.skipped_shards == 2
    twin = tmp_path / "twin"  # the same shards in another folder: another parent, not resumed into
    shutil.copytree(dis_build, twin)
    with pytest.raises(FlowprepError, match=r"another source.*parent folder: .*--overwrite"):
        reflow(twin, out, FARNEBACK, progress=False, executor=ray_cluster)
    with pytest.raises(FlowprepError, match=r"flow.backend: 'farneback' -> 'dis'.*--overwrite"):
        reflow(dis_build, out, FlowConfig(backend="dis"), progress=False, executor=ray_cluster)


def _reflow_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli_main(["reflow", *args, "--no-progress"])
    return code, capsys.readouterr().err


def test_a_source_that_is_incomplete_or_fails_verify_is_refused(dis_build, tmp_path, capsys):
    incomplete = tmp_path / "incomplete"
    shutil.copytree(dis_build, incomplete)
    manifest = Manifest.load(incomplete)
    (incomplete / manifest.shards[0].name).unlink()
    manifest.shards = manifest.shards[1:]
    manifest.save(incomplete)
    code, err = _reflow_cli(capsys, str(incomplete), "--out", str(tmp_path / "a"), "--flow", "farneback")
    assert code == EXIT_FATAL and "incomplete build" in err and "rerun its `flowprep build`" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "a").exists()

    damaged = tmp_path / "damaged"
    shutil.copytree(dis_build, damaged)
    shard = damaged / Manifest.load(damaged).shards[0].name
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    code, err = _reflow_cli(capsys, "--shards", str(damaged), "--out", str(tmp_path / "b"), "--flow", "farneback")
    assert code == EXIT_FATAL and "fails `flowprep verify`" in err and "sha256 differs" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "b").exists()

    code, err = _reflow_cli(capsys, str(tmp_path / "nowhere"), "--out", str(tmp_path / "c"), "--flow", "farneback")
    assert code == EXIT_FATAL and "not a folder" in err
    code, err = _reflow_cli(capsys, str(dis_build), "--out", str(dis_build), "--flow", "farneback")
    assert code == EXIT_FATAL and "is the source folder" in err
    code, err = _reflow_cli(capsys, str(dis_build), "--out", str(dis_build / "farneback"), "--flow", "farneback")
    assert code == EXIT_FATAL and "inside the source folder" in err and not (dis_build / "farneback").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    with BuildLock(busy):  # one writer per folder, as for build
        code, err = _reflow_cli(capsys, str(dis_build), "--out", str(busy), "--flow", "farneback")
    assert code == EXIT_FATAL and "is being written by another build" in err


def test_the_readme_reflow_command_runs(dis_build, reflowed, ray_cluster, tmp_path, monkeypatch, capsys):
    """The README's `flowprep reflow` lines, as written, in a folder whose `shards/` is the DIS build."""
    lines = [shlex.split(line.strip(), comments=True) for line in README.read_text().splitlines()
             if re.match(r"    flowprep reflow ", line)]
    assert lines, "the README shows no `flowprep reflow` command"
    shutil.copytree(dis_build, tmp_path / "shards")
    monkeypatch.chdir(tmp_path)
    for argv in lines:
        assert argv[0] == "flowprep"
        code = cli_main(argv[1:] + ["--no-progress"])
        err = capsys.readouterr().err
        assert code == EXIT_PARTIAL, err  # the parent's two failures are carried over
        out = Path(argv[argv.index("--out") + 1])
        assert verify(out) == [] and Manifest.load(out).parent["folder"] == str(tmp_path / "shards")
        assert f"clips written {CLIPS}" in err and "2 clip(s) failed in all" in err
    folder, _ = reflowed
    assert json.loads((out / "manifest.json").read_text())["totals"] == \
        json.loads((folder / "manifest.json").read_text())["totals"]


def test_pwcnet_reflow_runs_in_the_flow_actor(ray_cluster, tmp_path):
    """A model backend gets its own batched actor stage, as in a build; its flow is the backend's own
    on the stored crops (PWC-Net's architecture with seeded random weights; one 12-frame face clip)."""
    from flowprep.dataset import ShardDataset
    from flowprep.flow import get_backend
    from flowprep.flow.pwcnet import save_random_pwcnet_checkpoint

    media.make_face_clip(tmp_path / "videos" / "face" / "clip.mp4", frames=12, size=256)
    parent = tmp_path / "parent"
    made = build(tmp_path / "videos", parent, DIS.replace(layout="folder", audio=False), progress=False,
                 executor=ray_cluster)
    assert made.clips == 1
    ckpt = save_random_pwcnet_checkpoint(tmp_path / "pwcnet-random.ckpt", seed=0)
    flow = FlowConfig(backend="pwcnet", ckpt=str(ckpt), device="cpu", batch_pairs=64)
    out = tmp_path / "pwcnet"
    report = reflow(parent, out, flow, progress=False, executor=ray_cluster)
    assert report.complete and report.clips == 1 and report.flow_actors == 1
    info = Manifest.load(out).flow_backend
    assert info["name"] == "pwcnet" and info["device"] == "cpu" and info["actors"] == 1
    split = Manifest.load(out).shards[0].split
    mine, theirs = ShardDataset(out, split=split)[0], ShardDataset(parent, split=split)[0]
    gray = mine["gray"].numpy()
    assert np.array_equal(gray, theirs["gray"].numpy())
    exact = get_backend("pwcnet", ckpt=str(ckpt), device="cpu")(gray[:4], gray[1:5])
    inside = np.abs(exact) < 12.6  # int8 at 0.1 px saturates beyond 12.7 px
    assert inside.mean() > 0.5
    assert np.abs(mine["flow"].numpy()[:4] - exact)[inside].max() <= 0.05 + 1e-3
    assert verify(out) == []


def test_a_clip_that_cannot_be_read_is_an_error_not_a_failure_record(dis_build, tmp_path):
    """A source shard that vanished or changed after the check stops its shard (the reflow ends
    incomplete, rerun to finish), rather than recording the clip as failed and finishing short."""
    from flowprep.builder.reflow_runner import StoredClip, read_clip

    cfg = DIS.replace(flow=FARNEBACK)
    name = Manifest.load(dis_build).shards[0].name
    good = read_clip(StoredClip(str(dis_build / name), 0, "bbaf2n", "train"), cfg)
    assert good.gray.shape == (75, 112, 112) and good.flow.shape == (74, 2, 112, 112)
    assert good.record.text == "bin blue at f two now" and good.audio is not None
    with pytest.raises(FlowprepError, match="cannot read clip x.*run `flowprep verify`"):
        read_clip(StoredClip(str(tmp_path / name), 0, "x", "train"), cfg)
    with pytest.raises(FlowprepError, match="cannot read clip x.*out of"):
        read_clip(StoredClip(str(dis_build / name), 7, "x", "train"), cfg)


def test_a_source_shard_lost_mid_reflow_leaves_it_incomplete_and_a_rerun_finishes(dis_build, ray_cluster, tmp_path,
                                                                                  monkeypatch):
    import dataclasses

    import flowprep.builder.reflow_runner as module

    planned = module.plan_reflow

    def first_shard_gone(src, parent):  # as if the first source shard vanished after the checks
        plan = planned(src, parent)
        items = tuple(dataclasses.replace(it, path=str(tmp_path / "gone.h5")) if isinstance(it, module.StoredClip)
                      else it for it in plan[0].records)
        return [dataclasses.replace(plan[0], records=items)] + plan[1:]

    monkeypatch.setattr(module, "plan_reflow", first_shard_gone)
    out = tmp_path / "out"
    report = reflow(dis_build, out, FARNEBACK, progress=False, executor=ray_cluster)
    assert not report.complete and report.exit_code == EXIT_FATAL and report.written_shards == 1
    assert len(report.shard_errors) == 1 and "cannot read clip bbaf2n" in report.shard_errors[0]
    assert report.lines()[-1] == "the build is incomplete: rerun the same command to finish it"
    assert "incomplete build" in verify(out)[0]
    monkeypatch.undo()
    again = reflow(dis_build, out, FARNEBACK, progress=False, executor=ray_cluster)
    assert again.complete and again.written_shards == 1 and again.skipped_shards == 1 and verify(out) == []
