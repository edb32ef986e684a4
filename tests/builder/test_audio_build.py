"""`flowprep build --audio` end to end on a real local Ray cluster: audio stays aligned with the frames,
a clip without audio is a failure record, GRID's audio lands in the shards, landmarks come back in
crop coordinates, and audio is part of the config fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flowprep.builder import build
from flowprep.cli import build_parser, config_from_args
from flowprep.config import BuildConfig, FlowConfig
from flowprep.dataset import ShardDataset, ShardFile
from flowprep.errors import EXIT_PARTIAL, FlowprepError
from flowprep.shards.verify import verify
from tests import av_media as av
from tests import media

FRAMES, EVENT, RATE = 30, 17, 16000
PER_FRAME = int(RATE / av.FPS)
CFG = BuildConfig(layout="folder", flow=FlowConfig(backend="dis", preset="ultrafast"), shard_size=8, workers=2,
                  audio=True)
GRID_USED = 1  # GRID clips put into the build when the folder is there


@pytest.fixture(scope="module")
def av_build(tmp_path_factory, ray_cluster):
    src = tmp_path_factory.mktemp("av_src")
    frames = av.event_frames(FRAMES, EVENT, size=256, face=True)
    tone = av.tone_burst(FRAMES / av.FPS, EVENT / av.FPS)
    av.write_av_clip(src / "talk" / "sync.mp4", frames, tone)  # LRW's container and codec (aac)
    av.write_av_clip(src / "talk" / "sync_mp2.mpg", frames, tone)  # GRID's (MPEG-PS, mp2)
    av.write_av_clip(src / "talk" / "silent.mp4", frames, None)  # no audio stream at all
    for path in media.grid_clips()[:GRID_USED]:
        (src / "grid").mkdir(exist_ok=True)
        shutil.copy(path, src / "grid" / path.name)
    out = tmp_path_factory.mktemp("av_shards")
    report = build(src, out, CFG, progress=False, executor=ray_cluster)
    return src, out, report


def _clips(out: Path) -> dict[str, dict]:
    ds = ShardDataset(out, split="train", streams=("gray", "audio", "landmarks"))
    return {s["clip_id"]: s for s in (ds[i] for i in range(len(ds)))}


def test_audio_onset_and_visual_event_fall_on_the_same_frame(av_build):
    _, out, report = av_build
    clips = _clips(out)
    for clip_id in ("talk/sync", "talk/sync_mp2"):
        s = clips[clip_id]
        gray, audio = s["gray"].numpy(), s["audio"].numpy()
        assert gray.shape == (FRAMES, 112, 112) and s["audio_rate"] == RATE
        assert audio.dtype == np.int16 and audio.shape == (FRAMES * PER_FRAME,)
        visual = av.brightness_step_frame(gray)  # in the stored mouth crops, after face tracking
        onset = av.audio_onset_sample(audio, RATE)
        assert visual == EVENT, clip_id
        assert abs(onset * av.FPS / RATE - visual) <= 1, f"{clip_id}: onset at sample {onset}, event frame {visual}"
        assert abs(onset - EVENT * PER_FRAME) <= 0.010 * RATE  # in fact within 10 ms
        assert s["qc"]["audio_coverage"] > 0.95


def test_clip_without_audio_is_a_failure_record(av_build):
    _, out, report = av_build
    assert report.exit_code == EXIT_PARTIAL and report.complete and report.failed == 1
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert failures == [{"clip_id": "talk/silent", "path": failures[0]["path"], "split": "train",
                         "stage": "audio", "reason": "no audio stream"}]
    assert "talk/silent" not in _clips(out)


def test_manifest_verify_and_fingerprint(av_build, ray_cluster):
    src, out, report = av_build
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["audio"] is True and manifest["config"]["audio_rate"] == RATE
    assert manifest["config_fingerprint"] == CFG.fingerprint() != CFG.replace(audio=False).fingerprint()
    assert CFG.replace(audio_rate=8000).fingerprint() != CFG.fingerprint()
    # without audio the fields stay out of the fingerprint: folders built before the option still resume
    assert "audio" not in BuildConfig().output_dict() and "audio_rate" not in BuildConfig().output_dict()
    assert BuildConfig(audio_rate=8000).fingerprint() == BuildConfig().fingerprint()
    assert BuildConfig.from_dict(CFG.to_dict()) == CFG
    assert verify(out) == []
    with pytest.raises(FlowprepError, match="other settings.*audio"):
        build(src, out, CFG.replace(audio=False), progress=False, executor=ray_cluster)


def test_cli_option():
    args = build_parser().parse_args(["build", "--src", "a", "--out", "b", "--flow", "dis", "--audio"])
    assert config_from_args(args).audio is True
    args = build_parser().parse_args(["build", "--src", "a", "--out", "b", "--flow", "dis"])
    assert config_from_args(args).audio is False


def test_landmarks_are_stored_in_crop_coordinates(av_build):
    _, out, _ = av_build
    s = _clips(out)["talk/sync"]
    lm = s["landmarks"].float().numpy()
    assert lm.shape == (FRAMES, 68, 2)
    # raw per-frame landmarks, mapped into the crop whose transform comes from the smoothed track:
    # the mouth sits at the crop centre and the jaw spans the 140 px face width, up to landmark noise
    mouth = lm[:, 48:68].mean(axis=1)
    assert np.abs(np.median(mouth, axis=0) - 55.5).max() < 3 and np.abs(mouth - 55.5).max() < 8, mouth
    width = np.linalg.norm(lm[:, 16] - lm[:, 0], axis=1)
    assert abs(np.median(width) - 140) < 6 and np.abs(width - 140).max() < 20, width


def test_grid_clips_carry_their_audio(av_build, grid_dir):
    _, out, _ = av_build
    clips = _clips(out)
    names = [p.stem for p in media.grid_clips()[:GRID_USED]]
    for name in names:
        s = clips[f"grid/{name}"]
        assert s["gray"].shape[0] == media.GRID_FRAMES
        assert s["audio"].shape == (media.GRID_FRAMES * PER_FRAME,)
        rms = float(np.sqrt(np.mean(s["audio"].numpy().astype(np.float64) ** 2)))
        assert rms > 100, f"{name}: speech expected, RMS {rms:.0f}"
    for entry in json.loads((out / "manifest.json").read_text())["shards"]:
        with ShardFile(out / entry["name"]) as shard:
            assert shard.has_audio and shard.attrs["audio_rate"] == RATE
