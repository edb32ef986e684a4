"""The training loop: AdamW, warm-up + cosine schedule, optional AMP, a checkpoint after every epoch.

A run lives in one folder: ``last.pt`` (everything needed to continue), ``best.pt`` (the weights
with the best validation top-1), ``config.json``, ``metrics.csv`` (one row per epoch),
``steps.csv`` (loss and learning rate per step) and ``tb/`` (TensorBoard). ``resume=True``
continues from ``last.pt`` at the step after it; the logs are cut back to that step first, so an
interrupted epoch leaves no trace.

Under torchrun or Ray Train the same loop runs on every rank (distributed.py): each reads its slice
of every global batch, gradients are averaged by DDP, the logged loss and top-1 are summed over the
ranks first, and rank 0 alone writes logs and checkpoints. Weights are saved without DDP's wrapper,
so a run resumes on any number of ranks.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..errors import FlowprepError
from . import checkpoint, data, distributed
from .config import TrainConfig
from ..runtime import amp_dtype, autocast, grad_scaler, resolve_device
from .evaluation import evaluate_model
from .inflate import inflate, load_2d
from .models import build_model
from .pretrained import load_video, read_video
from .runlog import RunLog

EPOCH_FIELDS = ["epoch", "step", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                "clips_per_s", "epoch_s"]


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _Objective(nn.Module):
    """The model and its loss in one forward, the unit DDP wraps (a model with several heads computes
    its own loss). The loss is the weighted sum of per-clip losses: weights world/B for the rank's
    clips of a global batch of B (distributed.loss_scale), zero for a stand-in clip."""

    def __init__(self, model: nn.Module, label_smoothing: float):
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, inputs, lengths, labels, weights):
        def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            losses = F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=self.label_smoothing)
            return (losses * weights).sum()

        return self.model.loss(inputs, lengths, labels, loss_fn)  # backends.Classifier: each head learns


class _Session:
    """The live parts of a run (model, optimiser, schedule, loss scaling) and the step counter."""

    def __init__(self, cfg: TrainConfig, num_classes: int, steps_per_epoch: int, device: torch.device,
                 ctx: distributed.Context):
        self.cfg, self.device, self.steps_per_epoch, self.ctx = cfg, device, steps_per_epoch, ctx
        self.precision = amp_dtype(cfg.amp, device)
        model = build_model(cfg, num_classes)
        if cfg.sync_bn and ctx.active:
            model = distributed.sync_batchnorm(model, device)
        self.model = model.to(device)
        self.net: nn.Module = _Objective(self.model, cfg.label_smoothing)
        if ctx.active:
            self.net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = round(cfg.warmup_epochs * steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(warmup, cfg.epochs * steps_per_epoch))
        self.scaler = grad_scaler(device, self.precision)
        self.step = 0
        self.losses: list[float] = []  # of the steps this session ran

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": checkpoint.rng_state(), "step": self.step}

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        self.step = int(state["step"])

    def train_epoch(self, ds, epoch: int, normalize, log: RunLog | None,
                    on_batch: Callable[[dict, distributed.Step], None] | None = None) -> dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        t0 = time.perf_counter()
        plan = distributed.train_plan(len(ds), cfg.batch_size, ctx, cfg.seed, epoch)[: self.steps_per_epoch]
        loader = data.loader(ds, cfg, [s.indices for s in plan], epoch=epoch, device=self.device)
        bar = tqdm(total=sum(s.total for s in plan), unit="clip", desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not cfg.progress or not ctx.main, dynamic_ncols=True)
        loss_sum, hits, seen = 0.0, 0, 0
        self.model.train()
        for part, batch in zip(plan, loader):
            if on_batch is not None:
                on_batch(batch, part)
            inputs, lengths = data.model_inputs(batch, cfg.streams, normalize, self.device)
            labels = batch["label"].to(self.device, non_blocking=True)
            weights = torch.zeros(len(labels), device=self.device)
            weights[: part.real] = distributed.loss_scale(part, ctx)
            with autocast(self.device, self.precision):
                loss, logits = self.net(inputs, lengths, labels, weights)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            self.step += 1
            right = int((logits[: part.real].argmax(1) == labels[: part.real]).sum())
            # the global batch's mean loss: each rank holds world/B times its part of the sum
            value, right, count = distributed.sum_across([loss.item() / ctx.world, right, part.real], ctx)
            self.losses.append(value)
            if log is not None:
                log.step(self.step, epoch + 1, value, lr)
            loss_sum += value * count
            hits += int(right)
            seen += int(count)
            bar.update(part.total)
            bar.set_postfix(loss=f"{value:.3f}")
        bar.close()
        return {"epoch": epoch + 1, "step": self.step, "lr": lr, "train_loss": loss_sum / seen,
                "train_top1": hits / seen, "val_loss": "", "val_top1": "", "val_top5": "",
                "clips_per_s": seen / (time.perf_counter() - t0), "epoch_s": 0.0}


def train(config: TrainConfig, on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
          on_batch: Callable[[dict, distributed.Step], None] | None = None) -> dict[str, Any]:
    """Train (or, with ``config.resume``, continue) the run in ``config.out``; returns a summary.

    ``on_epoch_end(row)`` is called (on every rank) after each epoch's checkpoint with that epoch's
    metrics; an exception raised there stops training and leaves the run resumable. ``on_batch(batch,
    step)`` sees each batch this rank reads (``step.real`` of its clips count) before the model does.

    Started by torchrun (RANK, WORLD_SIZE, ... in the environment) or inside a Ray Train worker, this
    process is one rank of a data-parallel run; ``config.batch_size`` stays the global batch."""
    ctx, device_name = distributed.setup(config.device, config.dist_timeout_s)
    cfg = config.replace(device=device_name)
    distributed.check_batch(cfg.batch_size, ctx)
    out = Path(cfg.out)
    last = out / checkpoint.LAST
    if last.is_file() and not cfg.resume and distributed.elastic_restart():
        cfg = cfg.replace(resume=True)  # torchrun restarted the ranks after one failed: go on from last.pt
    if last.is_file() and not cfg.resume:
        raise FlowprepError(f"{out} already holds a run ({last.name}); pass --resume to continue it, "
                            "or choose another --out")
    # the 2D weights are read first: a wrong path fails before anything slow
    pretrained = load_2d(cfg.pretrained, cfg.frontend) if cfg.pretrained and not last.is_file() else None
    video = read_video(cfg.pretrained_video, cfg.frontend) if cfg.pretrained_video and not last.is_file() else None
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data.seed_everything(cfg.seed)

    data.require_word_level(cfg.shards)
    train_ds = data.dataset(cfg, cfg.train_split, train=True)
    manifest = train_ds.manifest
    if len(train_ds) == 0:
        raise FlowprepError(f"{cfg.shards} has no {cfg.train_split} clips to train on")
    classes = list(manifest.classes)
    if not classes:
        raise FlowprepError(f"{cfg.shards} has no classes to train on (its clips are unlabelled): rebuild it from an "
                            "LRW or GRID tree, or from a folder with one subfolder per class (videos/WORD/x.mp4)")
    roi = manifest.config.get("roi", {}).get("size")
    if roi and cfg.crop > roi:
        raise FlowprepError(f"--crop {cfg.crop} is larger than the shards' {roi}x{roi} crops")
    val_ds = data.dataset(cfg, cfg.val_split, train=False) if cfg.val_split in manifest.splits() else None
    normalize = data.normalizer(cfg, train_ds)
    run = _Session(cfg, len(classes), distributed.steps_per_epoch(len(train_ds), cfg.batch_size,
                                                                  cfg.max_steps_per_epoch), device, ctx)

    start_epoch, best = 0, -1.0
    if last.is_file():
        state = checkpoint.load(last)
        changed = TrainConfig.from_dict(state["config"]).differences(cfg)
        if state["shards_fingerprint"] != manifest.config_fingerprint:
            changed.append(f"shards: built with other settings ({state['shards_fingerprint']} -> "
                           f"{manifest.config_fingerprint})")
        if changed:
            raise FlowprepError(f"cannot resume {out}: settings changed ({'; '.join(changed)}). "
                                "Resume with the run's settings or start a new --out.")
        run.restore(state)
        start_epoch, best = int(state["epoch"]), float(state["best_top1"])
    elif pretrained is not None:
        for frontend in run.model.frontends.values():
            inflate(frontend, cfg.frontend, pretrained)
    elif video is not None:  # Kinetics weights, each stream from the file that fits it
        load_video(run.model.frontends, cfg.frontend, video)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")

    kept = {"config": cfg.to_dict(), "classes": classes, "shards_fingerprint": manifest.config_fingerprint,
            "normalize": {"gray_mean": normalize.gray_mean, "gray_std": normalize.gray_std,
                          "flow_std": normalize.flow_std}}
    log = RunLog(out, run.step, start_epoch, EPOCH_FIELDS) if ctx.main else None
    history, t_start, start_step = [], time.perf_counter(), run.step
    per_rank = max(1, cfg.batch_size // ctx.world)
    val_batches = data.eval_batches(distributed.eval_indices(len(val_ds), ctx), per_rank) if val_ds else []
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            row = run.train_epoch(train_ds, epoch, normalize, log, on_batch)
            if val_ds is not None:
                scores = evaluate_model(run.model, data.loader(val_ds, cfg, val_batches, device=device), cfg.streams,
                                        normalize, device, len(classes), run.precision, ctx=ctx)
                row.update(val_loss=scores["loss"], val_top1=scores["top1"], val_top5=scores["top5"])
            row["epoch_s"] = time.perf_counter() - t0
            improved = val_ds is not None and row["val_top1"] > best
            best = max(best, row["val_top1"]) if val_ds is not None else best
            if ctx.main:
                checkpoint.save(last, {**kept, **run.state(), "epoch": epoch + 1, "best_top1": best})
                if improved:
                    checkpoint.save(out / checkpoint.BEST, {**kept, "model": run.model.state_dict(),
                                                            "epoch": epoch + 1, "step": run.step,
                                                            "val_top1": row["val_top1"]})
                log.epoch(row)
            history.append(row)
            if on_epoch_end is not None:
                on_epoch_end(row)
    except Exception as exc:
        if ctx.active and distributed.lost_a_rank(exc):
            raise FlowprepError(
                f"rank {ctx.rank} of {ctx.world}: another rank stopped during epoch {epoch + 1} "
                f"({distributed.first_line(exc)}). {out} is resumable from its last checkpoint (epoch "
                f"{_saved_epoch(last)}): rerun the same command with --resume, on any number of ranks") from None
        raise
    finally:
        if log is not None:
            log.close()
    return _summary(out, history, start_epoch, start_step, run, best, time.perf_counter() - t_start)


def _saved_epoch(last: Path) -> str:
    try:
        return str(int(checkpoint.load(last)["epoch"]))
    except FlowprepError:
        return "none yet"


def _summary(out: Path, history: list[dict], start_epoch: int, start_step: int, run: _Session, best: float,
             seconds: float) -> dict[str, Any]:
    final = history[-1] if history else {}
    return {
        "run": str(out),
        "resumed_from_step": start_step,
        "epoch": final.get("epoch", start_epoch),
        "step": run.step,
        "train_loss": final.get("train_loss"),
        "train_top1": final.get("train_top1"),
        "val_top1": final.get("val_top1"),
        "val_top5": final.get("val_top5"),
        "best_val_top1": best if best >= 0 else None,
        "clips_per_s": sum(r["clips_per_s"] for r in history) / len(history) if history else None,
        "seconds": seconds,
        "history": history,
        "step_losses": run.losses,
        "ranks": run.ctx.world,
    }


def train_on_ray(config: TrainConfig, address: str | None = None, workers_per_node: int = 1) -> dict[str, Any]:
    """``train(config)`` as a data-parallel run through Ray Train: ``workers_per_node`` ranks on each
    node of the cluster at ``address`` (None: an embedded local cluster), GPUs when the cluster has
    them and ``config.device`` is not cpu. Rank 0's summary comes back; the run folder must be on a
    file system every node sees (it holds the checkpoints every rank loads)."""
    from ..builder.executor import run_data_parallel

    out = Path(config.out).resolve()
    use_gpu = False if config.device == "cpu" else (True if config.device.startswith("cuda") else None)
    return run_data_parallel(train, config.replace(out=str(out)), address=address,
                             workers_per_node=workers_per_node, use_gpu=use_gpu,
                             storage_path=str(out / "ray_train"), name=out.name,
                             timeout_s=config.dist_timeout_s)

