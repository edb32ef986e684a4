"""Cross audio-visual matching: features, pair generation, hard-pair selection, EER/AUC, and a short
training run on the real GRID clips that has to separate in-sync from shifted audio on a held-out speaker."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flowprep.dataset.audio import log_mel, mel_filterbank
from flowprep.train.avsync import (AVClip, AVSyncConfig, AVSyncPairs, audio_features, build_avsync_model,
                                   clips_from_videos, contrastive_loss, equal_error_rate, evaluate_avsync, roc_auc,
                                   select_hard_pairs, train_avsync)
from tests import media

# small enough to train in seconds on two cores: 30x50 mouths (the paper's 60x100 halved), 8 channels
SMALL = dict(frame_size=(30, 50), channels=8, embed=32, batch_size=32, lr=3e-3, epochs=6)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- metrics, checked by hand --------------------------------------------------------------------
def test_auc_by_hand():
    # positives 0.9, 0.8, 0.6; negatives 0.7, 0.5, 0.4: 8 of the 9 (pos, neg) pairs are ordered right
    assert roc_auc([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0]) == pytest.approx(8 / 9)
    assert roc_auc([1.0, 1.0, 0.0], [1, 0, 0]) == pytest.approx(0.75)  # a tie counts one half
    assert roc_auc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert roc_auc([3, 2, 1, 0], [0, 0, 1, 1]) == 0.0
    assert roc_auc([5, 5, 5, 5], [1, 0, 1, 0]) == 0.5
    with pytest.raises(ValueError):
        roc_auc([1, 2], [1, 1])


def test_eer_by_hand():
    # accepting score >= 0.7 rejects the positive 0.6 (FRR 1/3) and accepts the negative 0.7 (FAR 1/3)
    assert equal_error_rate([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0]) == pytest.approx((1 / 3, 0.7))
    assert equal_error_rate([3, 2, 1, 0], [1, 1, 0, 0])[0] == 0.0
    assert equal_error_rate([3, 2, 1, 0], [0, 0, 1, 1])[0] == pytest.approx(1.0)
    # positives 0.9, 0.3; negatives 0.6, 0.5, 0.1. At 0.5: FAR 2/3, FRR 1/2; at 0.6: FAR 1/3, FRR 1/2.
    # FAR - FRR crosses zero half-way: EER 1/2 at threshold 0.55
    eer, threshold = equal_error_rate([0.9, 0.6, 0.5, 0.3, 0.1], [1, 0, 0, 1, 0])
    assert eer == pytest.approx(0.5) and threshold == pytest.approx(0.55)


def test_contrastive_loss_and_hard_pair_selection():
    d = torch.tensor([0.1, 0.9, 0.5, 0.2, 1.5, 0.3])
    y = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    # genuine: d^2; impostors: max(0, 1 - d)^2
    expected = (0.01 + 0.81 + 0.25 + 0.64 + 0.0 + 0.49) / 6
    assert contrastive_loss(d, y, margin=1.0).item() == pytest.approx(expected)
    assert select_hard_pairs(d, y, None).tolist() == [0, 1, 2, 3, 4, 5]
    # the 2 farthest genuine pairs (0.9, 0.5) and the 2 closest impostors (0.2, 0.3)
    assert select_hard_pairs(d, y, 2).tolist() == [1, 2, 3, 5]
    assert select_hard_pairs(d, y, 1).tolist() == [1, 3]
    assert select_hard_pairs(d, y, 10).tolist() == [0, 1, 2, 3, 4, 5]  # fewer than k: all of them
    # on a random batch the kept pairs are the hardest of their kind, and they cost more than the rest
    g = torch.Generator().manual_seed(0)
    d, y = torch.rand(64, generator=g) * 1.5, (torch.rand(64, generator=g) < 0.5).float()
    keep = select_hard_pairs(d, y, 8)
    kept = torch.zeros(64, dtype=torch.bool)
    kept[keep] = True
    assert len(keep) == 16 and y[keep].sum() == 8
    assert d[kept & (y == 1)].min() >= d[~kept & (y == 1)].max()
    assert d[kept & (y == 0)].max() <= d[~kept & (y == 0)].min()
    assert contrastive_loss(d[keep], y[keep]) > contrastive_loss(d, y)


# ---- features and pairs ------------------------------------------------------------------------------
def test_log_mel_puts_a_tone_in_its_band_on_the_video_clock():
    rate = 16000
    t = np.arange(rate) / rate
    tone = np.where(t >= 0.5, np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)  # starts at 0.5 s
    mel = log_mel(tone, rate, 25.0, n_mels=40)  # 4 mel frames per video frame at 25 fps
    assert mel.shape == (100, 40)  # one frame per 10 ms
    fb = mel_filterbank(rate, 400, 40)  # the 25 ms window is 400 samples
    peak_hz = fb.argmax(0)[mel[70].argmax()].item() * rate / 400
    assert abs(peak_hz - 1000) < 80
    loud = (mel.max(1).values > -5).nonzero().flatten()
    assert loud[0].item() in (48, 49)  # frame j is centred at (j + 0.5) * 10 ms: the first 25 ms window reaching 0.5 s
    cube = audio_features(tone, rate, 25.0)
    assert cube.shape == (3, len(mel), 40)
    torch.testing.assert_close(cube.mean(dim=(1, 2)), torch.zeros(3), atol=1e-4, rtol=0)


def synthetic_clip(seconds: float = 3.0, fps: float = 25.0, rate: int = 16000, seed: int = 0) -> AVClip:
    g = np.random.default_rng(seed)
    return AVClip(g.integers(0, 256, (int(seconds * fps), 12, 20), dtype=np.uint8),
                  g.standard_normal(int(seconds * rate)).astype(np.float32) * 0.1, fps, rate, "noise")


def test_pairs_cut_genuine_and_shifted_audio():
    clip = synthetic_clip()
    both = AVSyncPairs([clip], window=9, shift_s=0.5, mode="both")
    feats = both.features[0]
    # 75 frames, 36 audio hops per window, a 50-hop shift: every start 0..66 has a shift that fits
    assert len(both.windows) == 67 and len(both) == 134
    genuine, impostor = both[2 * 10], both[2 * 10 + 1]
    assert genuine["label"] == 1.0 and impostor["label"] == 0.0
    assert genuine["video"].shape == (1, 9, 12, 20) and genuine["audio"].shape == (3, 36, 40)
    torch.testing.assert_close(genuine["audio"], feats[:, 40:76])  # frame 10 starts at 0.4 s = hop 40
    torch.testing.assert_close(impostor["audio"], feats[:, 90:126])  # 0.5 s later
    assert impostor["shift_s"] == pytest.approx(0.5)
    late = both[2 * 60 + 1]  # frame 60 (2.4 s): no room after, the audio comes from 0.5 s before
    assert late["shift_s"] == pytest.approx(-0.5)
    torch.testing.assert_close(late["audio"], feats[:, 190:226])
    assert torch.equal(genuine["video"], impostor["video"])

    rand = AVSyncPairs([clip], mode="random", seed=3)
    labels = [rand[i]["label"] for i in range(len(rand))]
    assert 0.25 < np.mean(labels) < 0.75
    rand.set_epoch(1)
    assert [rand[i]["label"] for i in range(len(rand))] != labels  # redrawn each epoch

    # held-out time range: windows and impostor audio stay inside [1.8, 3.0] s
    held = AVSyncPairs([clip], mode="both", time_range=(1.8, 3.0))
    for i in range(len(held)):
        item = held[i]
        t0 = item["start"] / clip.fps + min(0.0, item["shift_s"])
        t1 = (item["start"] + 9) / clip.fps + max(0.0, item["shift_s"])
        assert t0 >= 1.8 - 1e-6 and t1 <= 3.0 + 1e-6


def test_hard_mining_and_batch_negatives_change_what_a_step_trains_on():
    clips = [synthetic_clip(seed=0), synthetic_clip(seed=1)]
    tiny = dict(frame_size=(12, 20), channels=4, embed=8, epochs=1, batch_size=16)
    plain = train_avsync(clips, **tiny)
    hard = train_avsync(clips, hard_k=3, **tiny)
    wide = train_avsync(clips, batch_negatives=True, **tiny)
    wide_hard = train_avsync(clips, batch_negatives=True, hard_k=3, **tiny)
    assert plain["windows"] == 134 and len(plain["pairs_per_step"]) == 9  # 134 windows in batches of 16
    assert plain["pairs_per_step"][:8] == [16] * 8
    # k hardest of each kind: at most 3 + 3 (a batch may hold fewer than 3 genuine pairs)
    assert all(n <= 6 for n in hard["pairs_per_step"]) and max(hard["pairs_per_step"]) == 6
    # every video against the other windows' audio too: many more impostors than the batch's own pairs
    assert min(wide["pairs_per_step"][:8]) > 100
    assert wide_hard["pairs_per_step"][:8] == [6] * 8


def test_a_resumed_run_continues_as_if_never_stopped(tmp_path):
    """Two epochs in one go, or stopped after the first and resumed: the same steps, losses and logs."""
    import csv

    from flowprep.errors import FlowprepError

    clips = [synthetic_clip(seed=0), synthetic_clip(seed=1)]
    tiny = dict(frame_size=(12, 20), channels=4, embed=8, batch_size=32, stride=3, dropout=0.1)
    whole = train_avsync(clips, out=tmp_path / "whole", epochs=2, **tiny)

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_avsync(clips, out=tmp_path / "cut", epochs=2, on_epoch_end=stop, **tiny)
    with pytest.raises(FlowprepError, match="already holds a run"):
        train_avsync(clips, out=tmp_path / "cut", epochs=2, **tiny)
    with pytest.raises(FlowprepError, match="settings changed .*margin"):
        train_avsync(clips, out=tmp_path / "cut", epochs=2, resume=True, **{**tiny, "margin": 0.5})
    rest = train_avsync(clips, out=tmp_path / "cut", epochs=2, resume=True, **tiny)
    assert rest["resumed_from_step"] == len(whole["losses"]) // 2 > 0
    assert rest["losses"] == pytest.approx(whole["losses"][len(whole["losses"]) // 2:])

    def rows(run, name):
        with open(tmp_path / run / name) as fh:
            return [{k: v for k, v in r.items() if k != "epoch_s"} for r in csv.DictReader(fh)]

    assert rows("cut", "steps.csv") == rows("whole", "steps.csv") and len(rows("cut", "metrics.csv")) == 2
    assert rows("cut", "metrics.csv") == rows("whole", "metrics.csv")


def test_the_model_embeds_both_sides_into_one_space():
    model = build_avsync_model(AVSyncConfig(channels=4, embed=16))
    d = model(torch.randn(3, 1, 9, 30, 50), torch.randn(3, 3, 36, 40))
    assert d.shape == (3,) and (d >= 0).all() and (d <= 2 + 1e-5).all()


# ---- the real thing: GRID talking faces with their audio -------------------------------------------
@pytest.fixture(scope="module")
def grid_av(grid_dir):
    return clips_from_videos(media.grid_clips(), size=SMALL["frame_size"])


def test_grid_clips_decode_with_aligned_audio(grid_av):
    assert len(grid_av) == 6
    for clip in grid_av:
        assert clip.frames.shape == (75, 30, 50) and clip.fps == 25.0
        assert len(clip.audio) == 75 * 16000 // 25  # exactly the frames' span
        assert 0.05 < np.abs(clip.audio).max() <= 2.0


def test_avsync_learns_sync_on_grid_and_generalises_to_held_out_speakers(grid_av, tmp_path):
    """Three folds over the six GRID speakers: train on four (6 epochs), score every window of the two
    held out, in sync and shifted by 0.5 s. The assertion message prints the figures; measured with ROI
    crops and dataset.audio's log-mel (seeds 0-2, one thread): pooled AUC 0.71-0.73 trained (EER 0.33-0.36),
    0.51-0.54 untrained; the weakest fold (speakers 5-6) alone 0.63-0.66."""
    folds = [(0, 1), (2, 3), (4, 5)]
    trained, untrained = [], []
    for k, held in enumerate(folds):
        train = [c for i, c in enumerate(grid_av) if i not in held]
        test = [grid_av[i] for i in held]
        cfg = AVSyncConfig(**SMALL, seed=0)
        torch.manual_seed(0)
        untrained.append(evaluate_avsync(build_avsync_model(cfg), test, config=cfg, return_scores=True))
        summary = train_avsync(train, config=cfg, out=tmp_path / f"fold{k}")
        losses = summary["losses"]
        assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
        # scored from the checkpoint (read with weights_only=True), as `flowprep eval` would
        result = evaluate_avsync(tmp_path / f"fold{k}", test, split="heldout", return_scores=True)
        assert result["pairs"] == 2 * 2 * 67  # every 9-frame window of two 75-frame clips, both ways
        assert (tmp_path / f"fold{k}" / "avsync-eval-heldout.json").is_file()
        trained.append(result)
    # the same numbers from the model in memory as from its checkpoint
    again = evaluate_avsync(summary["model"], test, config=summary["config"])
    assert again["auc"] == pytest.approx(trained[-1]["auc"])

    def pooled(results):
        d = np.concatenate([r["distances"] for r in results])
        y = np.concatenate([r["labels"] for r in results])
        return roc_auc(-d, y), equal_error_rate(-d, y)[0]

    (auc, eer), (auc0, eer0) = pooled(trained), pooled(untrained)
    report = f"trained AUC {auc:.3f} EER {eer:.3f}; untrained AUC {auc0:.3f} EER {eer0:.3f}; " \
             f"per fold {[round(r['auc'], 3) for r in trained]}"
    assert auc > 0.62 and eer < 0.42, report
    assert auc > auc0 + 0.08, report
    assert abs(auc0 - 0.5) < 0.1, report  # an untrained model is at chance
    assert all(r["auc"] > 0.55 for r in trained), report


@pytest.fixture(scope="module")
def grid_av_shards(grid_dir, tmp_path_factory):
    """The six GRID clips built with --audio by the real pipeline (Ray, dlib, ffmpeg, DIS)."""
    import shutil

    from flowprep.builder import build
    from flowprep.config import BuildConfig, FlowConfig

    src = tmp_path_factory.mktemp("grid_av_src")
    for path in media.grid_clips():
        shutil.copy(path, src / path.name)
    out = tmp_path_factory.mktemp("grid_av_shards")
    cfg = BuildConfig(layout="folder", flow=FlowConfig(backend="dis", preset="ultrafast"), audio=True, workers=2)
    report = build(src, out, cfg, progress=False)
    assert report.clips == len(media.grid_clips()) and report.failed == 0
    return out


def test_commands_train_and_eval_the_avsync_task_from_audio_shards(grid_av_shards, tmp_path, capsys):
    """`flowprep train --task avsync` reads mouth crops + audio from real shards, trains with hard-pair
    selection, saves a weights-only checkpoint; `flowprep eval` knows the task and finds the shards from it."""
    from flowprep.cli import main as cli_main

    run = tmp_path / "avsync"
    assert cli_main(["train", "--task", "avsync", "--shards", str(grid_av_shards), "--out", str(run),
                     "--epochs", "1", "--batch-size", "16", "--hard-k", "4", "--device", "cpu", "--json",
                     "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] > 0 and np.isfinite(summary["final_loss"]) and summary["windows"] > 100
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["config"]["hard_k"] == 4 and state["shards"] == str(grid_av_shards) and state["task"] == "avsync"
    assert (run / "metrics.csv").is_file() and (run / "steps.csv").is_file() and (run / "tb").is_dir()
    # the run says it is an avsync one: `flowprep eval` needs no --task
    assert cli_main(["eval", "--run", str(run), "--split", "train", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["auc"] <= 1.0 and 0.0 <= result["eer"] <= 1.0 and result["pairs"] > 100
    assert (run / "avsync-eval-train.json").is_file()
