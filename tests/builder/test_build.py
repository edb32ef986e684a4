"""End to end: real videos -> `build` on a real local Ray cluster -> shards read back and checked."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flowprep.builder import build
from flowprep.cli import main as cli_main
from flowprep.config import BuildConfig, FlowConfig
from flowprep.dataset import ShardDataset, ShardFile
from flowprep.errors import EXIT_OK, EXIT_PARTIAL, FlowprepError
from flowprep.flow import get_backend
from tests import media

DIS = BuildConfig(flow=FlowConfig(backend="dis", preset="medium"), shard_size=3, workers=2)


@pytest.fixture(scope="module")
def lrw_src(lrw_tree):
    return lrw_tree


@pytest.fixture(scope="module")
def clean_build(lrw_src, ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    report = build(lrw_src, out, DIS, progress=False, executor=ray_cluster)
    return out, report


def _videos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.mp4"))


def test_every_clip_lands_once_with_its_metadata(lrw_src, clean_build):
    out, report = clean_build
    videos = _videos(lrw_src)
    assert report.exit_code == EXIT_OK and report.complete
    assert report.clips == len(videos) and report.failed == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["clips"] == len(videos)
    assert manifest["config_fingerprint"] == DIS.fingerprint()
    assert manifest["flow_backend"]["name"] == "dis"
    words = sorted({p.parent.parent.name for p in videos})
    assert manifest["classes"] == words
    seen = []
    for entry in manifest["shards"]:
        data = (out / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        with ShardFile(out / entry["name"]) as shard:
            assert len(shard) == entry["clips"] and shard.attrs["config_fingerprint"] == DIS.fingerprint()
            for i in range(len(shard)):
                clip = shard.clip(i)
                seen.append(clip["clip_id"])
                assert clip["split"] == entry["split"]
                assert clip["word"] == clip["clip_id"].split("/")[0]
                assert clip["label"] == words.index(clip["word"])
                assert clip["gray"].shape == (29, 112, 112) and clip["gray"].dtype == np.uint8
                assert clip["flow"].shape == (28, 2, 112, 112) and clip["flow"].dtype == np.float32
                assert clip["qc"]["detection_rate"] > 0.9
                assert 0 < clip["boundary"].sum() < 29  # the word sits inside the clip
    expected = sorted(str(p.relative_to(lrw_src).with_suffix("")) for p in videos)
    assert sorted(seen) == expected  # every clip exactly once


def test_stored_flow_is_the_flow_between_stored_crops(clean_build):
    """Recompute DIS on the stored crops: the stored flow must match up to quantisation."""
    out, _ = clean_build
    ds = ShardDataset(out, split="train")
    dis = get_backend("dis", preset="medium")
    sample = ds[0]
    gray = sample["gray"].numpy()
    exact = dis(gray[:-1], gray[1:])
    err = np.abs(exact - sample["flow"].numpy())
    assert err.max() <= 0.05 + 1e-4  # int8 at 0.1 px rounds to within half a step
    # and it is not the reverse flow, nor zero
    assert np.abs(exact).mean() > 0.05


def test_dataset_reads_every_split(clean_build):
    out, _ = clean_build
    for split in ("train", "val", "test"):
        ds = ShardDataset(out, split=split)
        assert len(ds) > 0
        assert ds[len(ds) - 1]["gray"].shape[1:] == (112, 112)
    with pytest.raises(FlowprepError, match="split 'dev' not in"):
        ShardDataset(out, split="dev")


def test_rerun_skips_everything_and_other_settings_are_refused(lrw_src, clean_build, ray_cluster):
    out, _ = clean_build
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    again = build(lrw_src, out, DIS, progress=False, executor=ray_cluster)
    assert again.clips == 0 and again.skipped_shards == len(before) and again.exit_code == EXIT_OK
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")} == before
    other = DIS.replace(flow=FlowConfig(backend="farneback"))
    with pytest.raises(FlowprepError, match=r"flow.backend: 'dis' -> 'farneback'.*--overwrite"):
        build(lrw_src, out, other, progress=False, executor=ray_cluster)


def test_bad_inputs_are_recorded_and_the_rest_is_built(tmp_path, ray_cluster):
    src = tmp_path / "videos"
    good = src / "good"
    good.mkdir(parents=True)
    media.make_face_clip(good / "face.mp4", frames=12, size=256)
    expected = media.make_bad_files(src / "bad")
    out = tmp_path / "out"
    cfg = DIS.replace(layout="folder", shard_size=4)
    report = build(src, out, cfg, progress=False, executor=ray_cluster)
    assert report.exit_code == EXIT_PARTIAL and report.complete
    assert report.clips == 1 and report.failed == len(expected)
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    by_name = {Path(f["path"]).name: f for f in failures}
    assert set(by_name) == set(expected)
    for name, stage in expected.items():
        assert by_name[name]["stage"] == stage, by_name[name]
        assert by_name[name]["reason"]
        if stage == "roi":
            assert by_name[name]["reason"].startswith("no face found in any of"), by_name[name]


def test_cli_exit_codes_and_summary(tmp_path, lrw_src, capsys):
    out = tmp_path / "out"
    code = cli_main(["build", "--src", str(lrw_src), "--out", str(out), "--flow", "dis", "--limit", "2",
                     "--no-progress", "--json"])
    assert code == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] == 2 and report["exit_code"] == 0
    assert cli_main(["build", "--src", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def _cli_build(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowprep.cli", "build", "--src", str(src), "--out", str(out), "--flow", "dis",
            "--no-progress", *extra]


def _sha256s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.h5"))}


def test_killed_build_says_so_until_the_rerun_completes_it_byte_for_byte(tmp_path, lrw_src, clean_build, capsys):
    """SIGKILL the CLI after its first commit: the folder is incomplete and says so (verify exit 1,
    ShardDataset refuses); the rerun completes it, and every shard equals a clean build's byte for byte."""
    out = tmp_path / "out"
    cmd = _cli_build(lrw_src, out, "--shard-size", "3", "--workers", "1")  # one worker: commits come one by one
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            manifest = out / "manifest.json"
            if manifest.exists() and json.loads(manifest.read_text())["shards"]:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray processes, mid-build
        proc.wait()
    reference = _sha256s(clean_build[0])
    partial = json.loads((out / "manifest.json").read_text())
    committed = {s["name"] for s in partial["shards"]}
    assert committed and committed < set(reference)
    absent = set(reference) - {p.name for p in out.glob("*.h5")}
    assert absent, "the build was not interrupted: every planned shard was already in place"
    for path in out.glob("*.h5"):  # anything that looks finished is either committed or whole
        with ShardFile(path):
            pass
    assert cli_main(["verify", str(out)]) == 1
    assert "incomplete build:" in capsys.readouterr().out
    with pytest.raises(FlowprepError, match=r"incomplete build: \d+ of 12 planned clips are missing"):
        ShardDataset(out, split="train")
    assert subprocess.run(cmd, stderr=subprocess.DEVNULL, timeout=300).returncode == EXIT_OK
    assert cli_main(["verify", str(out)]) == 0
    assert len(ShardDataset(out, split="train")) == 6
    assert _sha256s(out) == reference
    final = json.loads((out / "manifest.json").read_text())
    assert [s["sha256"] for s in final["shards"]] == [reference[s["name"]] for s in final["shards"]]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_second_build_into_the_same_folder_is_refused_and_the_first_completes(tmp_path, lrw_src, capsys):
    out = tmp_path / "out"
    first = subprocess.Popen(_cli_build(lrw_src, out, "--limit", "2", "--shard-size", "1", "--workers", "1"),
                             stderr=subprocess.DEVNULL)
    lock = out / ".flowprep.lock"
    deadline = time.time() + 60
    while time.time() < deadline and first.poll() is None:
        if lock.exists() and f'"pid": {first.pid},' in lock.read_text():
            break
        time.sleep(0.02)
    code = cli_main(["build", "--src", str(lrw_src), "--out", str(out), "--flow", "dis", "--limit", "2",
                     "--shard-size", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert first.wait(timeout=300) == EXIT_OK
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and f"PID {first.pid}, alive" in err and "another build" in err
    assert cli_main(["verify", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["totals"]["clips"] == 2


def test_a_rerun_removes_shards_the_plan_no_longer_holds(tmp_path, lrw_src, ray_cluster, caplog):
    """A source that shrank: its old last shard is not in the new plan. The rerun removes it, says so,
    and the folder verifies (it used to stay for ever, verify failing on every run)."""
    word = sorted(p for p in lrw_src.iterdir() if p.is_dir())[0]
    src = tmp_path / "lipread_mp4"
    shutil.copytree(word / "train", src / word.name / "train")
    out = tmp_path / "out"
    cfg = DIS.replace(shard_size=1)
    assert build(src, out, cfg, progress=False, executor=ray_cluster).exit_code == EXIT_OK
    assert sorted(p.name for p in out.glob("*.h5")) == ["train-00000.h5", "train-00001.h5"]
    last = sorted((src / word.name / "train").glob("*.mp4"))[-1]
    last.unlink()
    last.with_suffix(".txt").unlink()
    with caplog.at_level("WARNING"):
        report = build(src, out, cfg, progress=False, executor=ray_cluster)
    assert report.exit_code == EXIT_OK and report.complete and report.clips == 0  # train-00000 is reused
    assert "removed 1 shard(s) that the current plan does not contain" in caplog.text
    assert "train-00001.h5" in caplog.text
    assert sorted(p.name for p in out.glob("*.h5")) == ["train-00000.h5"]
    assert cli_main(["verify", str(out)]) == 0


def test_pwcnet_build_through_the_flow_actor(tmp_path, lrw_src, ray_cluster):
    """PWC-Net (ptlflow's architecture, seeded random weights) as its own batched actor stage."""
    from flowprep.flow.pwcnet import save_random_pwcnet_checkpoint

    ckpt = save_random_pwcnet_checkpoint(tmp_path / "pwcnet-random.ckpt", seed=0)
    cfg = BuildConfig(flow=FlowConfig(backend="pwcnet", ckpt=str(ckpt), device="cpu", batch_pairs=64), limit=1,
                      shard_size=1)
    out = tmp_path / "out"
    report = build(lrw_src, out, cfg, progress=False, executor=ray_cluster)
    assert report.exit_code == EXIT_OK and report.clips == 1
    # the summary says which stage set the pace: both capacities from the stages' own busy time
    balance = report.stage_balance
    assert report.flow_actors == 1 and balance["flow_frames_per_s"] > 0 and balance["cpu_frames_per_s"] > 0
    assert 0 < balance["flow_busy"] <= 1
    line = next(ln for ln in report.lines() if ln.startswith("flow stage (1 actor(s)) busy"))
    # PWC-Net on one CPU thread is far slower than decode + landmarks: here the CPU stages wait
    assert balance["flow_frames_per_s"] < balance["cpu_frames_per_s"] and line.endswith("the CPU stages wait for flow")
    manifest = json.loads((out / "manifest.json").read_text())
    info = manifest["flow_backend"]
    assert info["name"] == "pwcnet" and info["device"] == "cpu" and info["actors"] == 1
    assert info["ckpt_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    sample = ShardDataset(out, split=manifest["shards"][0]["split"])[0]
    gray = sample["gray"].numpy()
    exact = get_backend("pwcnet", ckpt=str(ckpt), device="cpu")(gray[:4], gray[1:5])
    stored = sample["flow"].numpy()[:4]
    inside = np.abs(exact) < 12.6  # int8 at 0.1 px saturates beyond 12.7 px
    assert inside.mean() > 0.5
    assert np.abs(stored - exact)[inside].max() <= 0.05 + 1e-3


def test_pwcnet_precision_auto_is_probed_in_the_actor_and_named(tmp_path, lrw_src, ray_cluster):
    """--flow-precision auto: the flow actor probes fp32 against bf16 on its own CPU and keeps the faster;
    the summary and the manifest name the choice with the probe's figures (flowprep/flow/precision.py)."""
    from flowprep.flow.pwcnet import save_random_pwcnet_checkpoint

    ckpt = save_random_pwcnet_checkpoint(tmp_path / "pwcnet-random.ckpt", seed=0)
    cfg = BuildConfig(flow=FlowConfig(backend="pwcnet", ckpt=str(ckpt), device="cpu", batch_pairs=64,
                                      precision="auto"), limit=1, shard_size=1)
    report = build(lrw_src, tmp_path / "out", cfg, progress=False, executor=ray_cluster)
    assert report.exit_code == EXIT_OK and report.clips == 1
    info = json.loads((tmp_path / "out" / "manifest.json").read_text())["flow_backend"]
    chosen = info["options"]["dtype"]
    assert chosen in ("fp32", "bf16") and info["precision_auto"].startswith(f"{chosen} (--flow-precision auto on cpu")
    assert f"flow precision: {info['precision_auto']}" in report.lines()
