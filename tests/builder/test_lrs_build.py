"""An LRS3-shaped tree cut from the real GRID clips builds (DIS flow), shards close by bytes, and every
clip reads back with its transcript and word timings; the word-level trainer refuses the folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch.utils.data import DataLoader

from flowprep.builder import build
from flowprep.builder.plan import frame_bytes
from flowprep.cli import build_parser, config_from_args
from flowprep.cli import main as cli_main
from flowprep.dataset import ShardDataset, pad_collate
from flowprep.decode import decode_gray
from tests import media

PER_FRAME = frame_bytes(112, "int8")
# clip id -> (GRID clip index, first frame, frames, transcript, word timings or None)
CLIPS = {
    "trainval/spkA/00001": (0, 0, 30, "BIN BLUE AT", None),
    "trainval/spkA/00002": (1, 10, 40, "LAY BLUE", None),
    "trainval/spkB/00003": (2, 5, 25, "LAY BLUE BY", None),
    "test/spkC/00001": (3, 20, 30, "LAY RED", None),
    # a pretrain clip twice as long as any other (two GRID clips end to end), with its word table
    "pretrain/spkA/00001": (4, 0, 150, "SET WHITE WITH P TWO SOON",
                            (("SET", 0.1, 0.4), ("WHITE", 0.4, 0.8), ("WITH", 0.8, 1.0), ("P", 1.0, 1.3),
                             ("TWO", 1.3, 1.7), ("SOON", 1.7, 2.2))),
}


def _txt(text: str, words) -> str:
    out = f"Text:  {text}\nConf:  4\n"
    if words:
        out += "\nWORD START END ASDSCORE\n" + "".join(f"{w} {a:.2f} {z:.2f} 3.5\n" for w, a, z in words)
    return out


@pytest.fixture(scope="module")
def lrs3_tree(grid_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("lrs3")
    clips = media.grid_clips()
    decoded = [decode_gray(c).frames for c in clips]
    for clip_id, (k, start, n, text, words) in CLIPS.items():
        frames = np.concatenate([decoded[k], decoded[(k + 1) % len(decoded)]])[start:start + n]
        video = root / f"{clip_id}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        media.write_mp4(video, frames, faststart=False)
        (root / f"{clip_id}.txt").write_text(_txt(text, words))
    return root


@pytest.fixture(scope="module")
def lrs3_build(lrs3_tree, ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("lrs3_shards")
    # the build options as the CLI reads them: --shard-bytes holds two trainval clips (30 + 40 frames), not three
    args = build_parser().parse_args(["build", "--src", str(lrs3_tree), "--out", str(out), "--flow", "dis",
                                 "--workers", "2", "--shard-bytes", str(75 * PER_FRAME)])
    cfg = config_from_args(args)
    assert cfg.layout == "auto" and cfg.shard_bytes == 75 * PER_FRAME
    report = build(lrs3_tree, out, cfg, progress=False, executor=ray_cluster)
    return out, report


def test_every_clip_reads_back_with_its_text(lrs3_build):
    out, report = lrs3_build
    assert report.exit_code == 0 and report.complete and report.clips == len(CLIPS) and report.failed == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"] == "lrs"
    seen = {}
    for split in ("pretrain", "test", "trainval"):  # the corpus's own splits
        ds = ShardDataset(out, split)
        for i in range(len(ds)):
            sample = ds[i]
            seen[sample["clip_id"]] = sample
    assert set(seen) == set(CLIPS)
    for clip_id, (_, _, n, text, words) in CLIPS.items():
        sample = seen[clip_id]
        assert sample["text"] == text
        assert sample["words"] == [(w, pytest.approx(a), pytest.approx(z)) for w, a, z in words or ()]
        assert sample["gray"].shape == (n, 112, 112) and sample["flow"].shape == (n - 1, 2, 112, 112)
        assert sample["label"] == -1 and sample["word"] == ""
    # the word table also gives the speech's boundary: frames before SET's start are outside it
    pre = seen["pretrain/spkA/00001"]["boundary"]
    assert pre[:2].tolist() == [0.0, 0.0] and pre[10].item() == 1.0 and pre[-1].item() == 0.0


def test_shards_close_by_bytes(lrs3_build):
    out, _ = lrs3_build
    manifest = json.loads((out / "manifest.json").read_text())
    clips = {s["name"]: s["clips"] for s in manifest["shards"]}
    # trainval: 30 + 40 frames fit under 75 frames' bytes, the third clip (25) starts a shard of its own
    assert clips == {"pretrain-00000.h5": 1, "test-00000.h5": 1, "trainval-00000.h5": 2, "trainval-00001.h5": 1}
    for name in ("trainval-00000.h5", "trainval-00001.h5"):  # the estimate bounds the stored file
        assert (out / name).stat().st_size < 75 * PER_FRAME


def test_variable_length_clips_batch_with_their_words(lrs3_build):
    out, _ = lrs3_build
    batch = next(iter(DataLoader(ShardDataset(out, "trainval"), batch_size=3, collate_fn=pad_collate)))
    assert batch["lengths"].tolist() == [30, 40, 25] and batch["gray"].shape == (3, 40, 112, 112)
    assert batch["text"] == ["BIN BLUE AT", "LAY BLUE", "LAY BLUE BY"] and batch["words"] == [[], [], []]


def test_word_level_trainer_refuses_sentence_folders(lrs3_build, tmp_path, capsys):
    out, _ = lrs3_build
    code = cli_main(["train", "--shards", str(out), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "sentence-level" in err and "ShardDataset" in err
