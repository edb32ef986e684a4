"""Flow work is cut by pairs, not by clips: a long clip is split across batches, short clips share
one, and the stored flow is the same as flow computed clip by clip. Plus a build whose flow is any
ptlflow model (raft_small, seeded random weights) through the flow actor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowprep.builder import build
from flowprep.builder.feed import FlowFeed
from flowprep.builder.stages import FlowWorker
from flowprep.config import BuildConfig, FlowConfig
from flowprep.dataset import ShardDataset
from flowprep.decode import decode_gray
from flowprep.errors import EXIT_OK
from flowprep.flow import get_backend, quantize_flow_stats
from flowprep.flow.bench import frames
from flowprep.shards.records import ClipResult
from flowprep.sources import ClipRecord
from tests import media


class Recording:
    """A real backend that also notes how many pairs each call held."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []

    def __call__(self, prev, nxt):
        self.calls.append(len(prev))
        return self.backend(prev, nxt)


def _clip(gray: np.ndarray, name: str) -> ClipResult:
    record = ClipRecord(clip_id=name, path=f"{name}.mp4", split="train", label=0, word="w", source="folder")
    t = len(gray)
    return ClipResult(record, gray, np.zeros((t, 68, 2), np.float32), np.zeros((t, 2, 3), np.float32), {}, 25.0)


def test_flow_worker_batches_pairs_across_clips_and_stores_what_each_clip_alone_gives():
    prev, nxt = frames(60, seed=3)
    video = np.concatenate([prev[:30], nxt[29:30]])  # 31 frames: a long clip in batches of 8
    lengths = {"long": 31, "short": 3, "single": 1, "mid": 12}
    start, clips = 0, []
    for name, t in lengths.items():
        clips.append(_clip(video[:t] if name == "long" else nxt[start:start + t], name))
        start += t
    worker = FlowWorker(FlowConfig(backend="dis", preset="fast", batch_pairs=8))
    worker.backend = Recording(worker.backend)
    items = worker(*clips)
    pairs = sum(t - 1 for t in lengths.values())
    assert worker.backend.calls == [8] * (pairs // 8) + [pairs % 8]  # full batches across clip boundaries
    alone = get_backend("dis", preset="fast")
    for item in items:
        gray = item.gray
        exact = alone(gray[:-1], gray[1:])  # this clip alone, in one call
        stored, saturated = quantize_flow_stats(exact, "int8", 0.1)
        assert item.flow.dtype == np.int8 and np.array_equal(item.flow, stored)
        assert item.qc["flow_saturated"] == saturated
        if len(gray) > 1:
            mag = np.hypot(exact[:, 0], exact[:, 1])
            assert item.qc["flow_mag_mean"] == float(mag.mean())
            assert item.qc["flow_mag_p99"] == float(np.percentile(mag, 99))
        else:
            assert item.flow.shape == (0, 2, 112, 112)


def test_feed_groups_clips_by_pairs_in_order_as_their_crops_finish():
    feed = FlowFeed("shard", ["a", "b", "c", "d", "e"], batch_pairs=10)
    feed.frames[:2] = [4, 5]  # 3 + 4 pairs: not a full call yet, and c is not known
    assert list(feed.groups()) == [] and not feed.finished
    feed.frames[3] = 300  # d known before c: order is kept, nothing moves
    assert list(feed.groups()) == []
    # a, b, c: 8 pairs, and d would pass 10; d alone is a full call (299 pairs: the actor cuts it)
    feed.frames[2] = 2
    assert list(feed.groups()) == [(["a", "b", "c"], [4, 5, 2]), (["d"], [300])] and not feed.finished
    feed.frames[4] = 0  # e failed in its crop: no pairs, still a call of its own to reach the writer
    assert list(feed.groups()) == [(["e"], [0])] and feed.finished


@pytest.fixture(scope="module")
def grid_frames(grid_dir):
    return [decode_gray(p).frames for p in media.grid_clips()[:4]]


def test_a_long_clip_builds_and_equals_its_flow_computed_whole(tmp_path, grid_frames, ray_cluster):
    """A 300-frame clip (four GRID clips end to end) next to a 75-frame one, flow batches of 64 pairs."""
    src = tmp_path / "src" / "speaker"
    src.mkdir(parents=True)
    media.write_mp4(src / "long.mp4", np.concatenate(grid_frames), faststart=True)
    media.write_mp4(src / "short.mp4", grid_frames[0], faststart=True)
    cfg = BuildConfig(layout="folder", flow=FlowConfig(backend="dis", preset="fast", batch_pairs=64), shard_size=2)
    report = build(tmp_path / "src", tmp_path / "out", cfg, progress=False, executor=ray_cluster)
    assert report.exit_code == EXIT_OK and report.clips == 2
    ds = ShardDataset(tmp_path / "out", split="train")
    samples = {ds[i]["clip_id"]: ds[i] for i in range(len(ds))}
    assert samples["speaker/long"]["gray"].shape[0] == 300 and samples["speaker/short"]["gray"].shape[0] == 75
    dis = get_backend("dis", preset="fast")
    for sample in samples.values():
        gray = sample["gray"].numpy()
        stored = quantize_flow_stats(dis(gray[:-1], gray[1:]), "int8", 0.1)[0].astype(np.float32) * np.float32(0.1)
        np.testing.assert_array_equal(sample["flow"].numpy(), stored)


def test_any_ptlflow_model_builds_through_the_flow_actor(tmp_path, grid_frames, ray_cluster):
    """`--flow ptlflow:raft_small` with a seeded random checkpoint: two 3-frame clips sharing one
    batch of 4 pairs; the stored flow is ptlflow's forward on the stored crops, within the int8 step."""
    import ptlflow
    import torch
    import torch.nn.functional as F

    from flowprep.flow.ptlflow_models import save_random_checkpoint

    ckpt = save_random_checkpoint(tmp_path / "raft_small-random.ckpt", "raft_small", seed=0)
    src = tmp_path / "src" / "speaker"
    src.mkdir(parents=True)
    for i in range(2):
        media.write_mp4(src / f"clip{i}.mp4", grid_frames[i][10:13], faststart=True)
    cfg = BuildConfig(layout="folder", flow=FlowConfig(backend="ptlflow:raft_small", ckpt=str(ckpt), device="cpu",
                                                       batch_pairs=4), shard_size=2)
    out = tmp_path / "out"
    report = build(tmp_path / "src", out, cfg, progress=False, executor=ray_cluster)
    assert report.exit_code == EXIT_OK and report.clips == 2 and report.flow_actors == 1
    info = json.loads((out / "manifest.json").read_text())["flow_backend"]
    assert info["name"] == "ptlflow:raft_small" and info["model"] == "raft_small" and info["device"] == "cpu"
    # ptlflow's own loading and forward, here: RAFT's coarsest level vanishes at 112 px, so the
    # backend runs it at 2x (224 px, bilinear) and scales the flow back; the same steps by hand
    model = ptlflow.get_model("raft_small", ckpt_path=str(ckpt)).eval()
    ds = ShardDataset(out, split="train")
    torch.set_num_threads(1)
    for i in range(len(ds)):
        sample = ds[i]
        gray = sample["gray"].float() / 255.0  # [T,112,112]
        big = F.interpolate(gray[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0]
        images = torch.stack([big[:-1], big[1:]], dim=1)[:, :, None].expand(-1, -1, 3, -1, -1)
        with torch.inference_mode():
            flow = model({"images": images})["flows"][:, 0]
        exact = (F.interpolate(flow, size=(112, 112), mode="bilinear", align_corners=False) / 2).numpy()
        assert np.isfinite(exact).all() and np.abs(exact).mean() > 0.05  # real flow, not zeros
        inside = np.abs(exact) < 12.6  # int8 at 0.1 px saturates beyond 12.7 px
        assert inside.mean() > 0.5  # random weights give large flow; most of it is within range
        np.testing.assert_allclose(sample["flow"].numpy()[inside], exact[inside], rtol=0, atol=0.05 + 1e-3)
