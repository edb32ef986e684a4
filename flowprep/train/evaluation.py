"""Scoring a model on a split: loss, top-1/top-5, the confusion matrix and its most confused pairs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import FlowprepError
from ..runtime import amp_dtype, autocast, resolve_device
from ..transforms import Normalize
from . import checkpoint, data, distributed
from .config import TrainConfig
from .models import build_model


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: DataLoader, streams: tuple[str, ...], normalize: Normalize,
                   device: torch.device, num_classes: int, precision: torch.dtype | None = None,
                   progress: bool = False, ctx: distributed.Context = distributed.Context()) -> dict[str, Any]:
    """{"loss", "top1", "top5", "clips", "confusion" ([K, K] counts, rows = true class)}.

    Under several ranks each reads its part of the split; per-clip rows (index, label, loss, top-k)
    are gathered and scored in index order, so the figures equal one process's exactly."""
    model.eval()
    k = min(5, num_classes)
    rows = []
    for batch in tqdm(loader, desc="eval", unit="batch", disable=not progress or not ctx.main, leave=False):
        inputs, lengths = data.model_inputs(batch, streams, normalize, device)
        labels = batch["label"].to(device)
        with autocast(device, precision):
            logits = model(inputs, lengths)
        logits = logits.float()
        losses = nn.functional.cross_entropy(logits, labels, reduction="none")
        top = logits.topk(k, dim=1).indices
        rows.append(torch.cat([batch["index"].to(device)[:, None].double(), labels[:, None].double(),
                               losses[:, None].double(), top.double()], 1).cpu())
    model.train()
    mine = torch.cat(rows) if rows else torch.zeros((0, 3 + k), dtype=torch.float64)
    table = distributed.gather_rows(mine, ctx)
    table = table[table[:, 0].argsort()]
    clips = table.shape[0]
    if clips == 0:
        raise FlowprepError("nothing to evaluate: the split is empty")
    labels, top = table[:, 1].long(), table[:, 3:].long()
    confusion = torch.bincount(labels * num_classes + top[:, 0], minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes)
    top5_hits = int((top == labels[:, None]).any(1).sum())
    return {"loss": float(table[:, 2].sum()) / clips, "top1": int(confusion.diag().sum()) / clips,
            "top5": top5_hits / clips, "clips": clips, "confusion": confusion}


def most_confused(confusion: torch.Tensor, classes: list[str], n: int = 10) -> list[dict[str, Any]]:
    """The n largest off-diagonal counts: which word was taken for which, how often, out of how many."""
    off = confusion.clone()
    off.fill_diagonal_(0)
    counts, flat = off.flatten().topk(min(n, off.numel()))
    rows = confusion.sum(1)
    out = []
    for count, index in zip(counts.tolist(), flat.tolist()):
        if count == 0:
            break
        true, pred = divmod(index, confusion.shape[0])
        out.append({"true": classes[true], "predicted": classes[pred], "count": count, "of": int(rows[true])})
    return out


def evaluate(run: str | Path, split: str = "val", which: str = "best", device: str = "auto",
             batch_size: int | None = None, workers: int | None = None, shards: str | Path | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Score a run's checkpoint (``which``: best, falling back to last when no best was kept; or last)
    on ``split`` of its shards (or of ``shards``, built with the same settings). Writes
    eval-<split>.json and confusion-<split>.csv into the run. An avsync run (``train --task avsync``) is
    scored by ``avsync.evaluate_avsync`` instead: AUC and EER, written to avsync-eval-<split>.json.

    Started by torchrun (or in a Ray Train worker), every rank scores its part of the split and rank 0
    writes the files; the figures equal one process's."""
    if which not in ("best", "last"):
        raise FlowprepError(f"checkpoint {which!r}: use best or last")
    run = Path(run)
    path = run / (checkpoint.BEST if which == "best" and (run / checkpoint.BEST).is_file() else checkpoint.LAST)
    state = checkpoint.load(path)
    if state.get("task", "lipread") != "lipread":  # the run says what it learned: an avsync run is scored as one
        from .avsync import evaluate_avsync

        return evaluate_avsync(run, shards=shards, split=split, device=device)
    cfg = TrainConfig.from_dict(state["config"])
    ctx, device = distributed.setup(device, cfg.dist_timeout_s)
    cfg = cfg.replace(device=device, workers=cfg.workers if workers is None else workers,
                      shards=str(shards or cfg.shards))
    dev = resolve_device(cfg.device)
    classes = list(state["classes"])
    model = build_model(cfg, len(classes)).to(dev)
    model.load_state_dict(state["model"])
    ds = data.dataset(cfg, split, train=False)
    if ds.manifest.config_fingerprint != state["shards_fingerprint"]:
        raise FlowprepError(f"{cfg.shards} was built with other settings than the shards {run} was trained on")
    normalize = Normalize(**state["normalize"])
    per_rank = max(1, (batch_size or cfg.batch_size) // ctx.world)
    loader = data.loader(ds, cfg, data.eval_batches(distributed.eval_indices(len(ds), ctx), per_rank), device=dev)
    precision = amp_dtype(cfg.amp, dev) if dev.type == "cuda" else None  # as trained: --amp runs eval in AMP too
    result = evaluate_model(model, loader, cfg.streams, normalize, dev, len(classes), precision, progress=progress,
                            ctx=ctx)
    confusion = result.pop("confusion")
    result.update(split=split, checkpoint=path.name, epoch=int(state["epoch"]), step=int(state["step"]),
                  most_confused=most_confused(confusion, classes), ranks=ctx.world)
    if not ctx.main:
        return result
    (run / f"eval-{split}.json").write_text(json.dumps(result, indent=1) + "\n")
    with open(run / f"confusion-{split}.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true \\ predicted"] + classes)
        for word, row in zip(classes, confusion.tolist()):
            writer.writerow([word] + row)
    return result
