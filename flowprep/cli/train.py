"""`flowprep train`, `flowprep eval` and `flowprep report`: thin layers over flowprep.train.train, .evaluate
and .report (`flowprep bench train` is registered with the other measurements, in cli/bench.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import FlowprepError
from ..train.config import BACKENDS, FRONTENDS, FUSIONS, TrainConfig
from ..train.report import add_report_parser
from .forms import ExamplesHelp

TRAIN_HELP = """\
Train a lipreading network on a shard folder. Examples (the seed paper's ablations):

  flowprep train --shards shards/ --out runs/i3d-2s --frontend i3d --streams gray,flow --amp
  flowprep train --shards shards/ --out runs/r3d-gray --streams gray
  flowprep train --shards shards/ --out runs/r3d-2s-tcn --backend tcn
  flowprep train --shards shards/ --out runs/r3d-late --fusion scores
  flowprep train --shards shards/ --out runs/r2d --streams gray --frontend resnet2d --pretrained resnet34.pth
  flowprep train --shards shards/ --out runs/i3d-2s-k --frontend i3d --pretrained-video rgb_imagenet.pt,flow_imagenet.pt
  flowprep train --shards shards/ --out runs/i3d-2s --resume          # continue after an interruption
  flowprep train --shards shards/ --out runs/gray-heat --streams gray,heatmap --fusion conv --fusion-stage 2
  flowprep train --shards shards/ --out runs/lateral --streams gray,flow --fusion scores --lateral
  flowprep train --task avsync --shards av_shards/ --out runs/avsync --hard-k 8   # needs `build --audio`

The run folder gets last.pt, best.pt, config.json, metrics.csv, steps.csv and tb/ (TensorBoard)."""


def register(commands) -> None:
    """``flowprep train``, ``eval`` and ``report`` (``commands``: the subcommands of ``flowprep``)."""
    d = TrainConfig(shards="", out="")
    t = commands.add_parser("train", help="train a two-stream lipreading network on shards",
                            description=TRAIN_HELP, formatter_class=ExamplesHelp)
    t.add_argument("--shards", required=True, help="a shard folder written by `flowprep build`")
    t.add_argument("--out", required=True, help="the run folder (checkpoints, metrics, TensorBoard)")
    t.add_argument("--task", default="lipread", choices=["lipread", "avsync"],
                   help="lipread: word classification; avsync: coupled audio/video 3D CNNs that tell in-sync "
                        "from shifted audio (contrastive loss; shards built with --audio)")
    t.add_argument("--frontend", default=d.frontend, choices=FRONTENDS,
                   help="front-end of each stream: resnet2d (2D ResNet-34 per frame), c3d-resnet (three 3D convs "
                        "64/64/96 + 2D ResNet-34 per frame), i3d (3D Inception-v1): the seed paper's; r3d18 (3D "
                        "ResNet-18): flowprep's own")
    t.add_argument("--backend", default=d.backend, choices=BACKENDS,
                   help="temporal back-end: conv1d (two 1D convs over time + FC: the seed paper's temporal "
                        "convolution), bilstm (2-layer BiLSTM: the paper's), tcn (residual dilated 1D convs: "
                        "flowprep's own)")
    t.add_argument("--streams", default=",".join(d.streams),
                   help="one or two of gray, flow, heatmap (20 mouth-landmark Gaussian maps), comma-separated")
    t.add_argument("--fusion", default=d.fusion, choices=FUSIONS,
                   help="two streams: features (concatenate per-frame features), scores (average two heads' "
                        "logits), or fuse feature maps at --fusion-stage by sum|max|concat|conv|bilinear, "
                        "then 3D conv + 3D pooling")
    t.add_argument("--fusion-stage", type=int, default=d.fusion_stage,
                   help="front-end stage a map fusion happens after (0 = stem; -1 = the last)")
    t.add_argument("--lateral", action="store_true",
                   help="bidirectional lateral connections between the two front-ends, plus a joint head")
    t.add_argument("--width", type=float, default=d.width, help="front-end channel multiplier")
    t.add_argument("--hidden", type=int, default=d.hidden, help="LSTM units per direction / TCN channels")
    t.add_argument("--layers", type=int, default=None,
                   help="back-end depth (default 2 conv1d layers, 2 LSTM layers, 4 TCN blocks)")
    t.add_argument("--dropout", type=float, default=d.dropout, help="dropout in the back-end")
    t.add_argument("--pretrained", default=None,
                   help="2D ImageNet weights (.pth) for the front-ends (round 1): a torchvision resnet34 state_dict "
                        "for resnet2d and c3d-resnet (loaded as is), resnet18 for r3d18 and googlenet for i3d "
                        "(inflated to 3D); made on a connected machine, the error says how")
    t.add_argument("--pretrained-video", default=None, metavar="PATH[,PATH]",
                   help="Kinetics-400 video weights (round 2): torchvision's r3d_18 state_dict for r3d18; the PyTorch "
                        "I3D port's rgb_imagenet.pt and/or flow_imagenet.pt for i3d (comma-separated; gray takes "
                        "the RGB file, flow the flow file)")
    t.add_argument("--epochs", type=int, default=d.epochs, help="epochs in all (raise it and --resume to go on)")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help="clips per step")
    t.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW)")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    t.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up before the cosine")
    t.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="cross-entropy label smoothing")
    t.add_argument("--crop", type=int, default=d.crop, help="random crop (train) / centre crop (eval) size")
    t.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    t.add_argument("--max-steps-per-epoch", type=int, default=None, help="a quick trial on part of the data")
    t.add_argument("--amp", action="store_true", help="mixed precision on CUDA (bfloat16, else float16)")
    t.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    t.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    t.add_argument("--seed", type=int, default=d.seed, help="initialisation, order and augmentation")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    dp = t.add_argument_group(
        "several GPUs / a cluster",
        "Data parallel: `torchrun --nproc-per-node N -m flowprep train ...` on one node (NCCL on GPUs,\n"
        "gloo on CPUs), or --ray-address through Ray Train. --batch-size stays the global batch (divided\n"
        "among the ranks; it must divide by their number); the learning-rate schedule is that of one\n"
        "process with it. Rank 0 writes the checkpoints; --resume works on any number of ranks.")
    dp.add_argument("--sync-bn", action="store_true",
                    help="BatchNorm statistics over the global batch (SyncBatchNorm): the same steps as one process. "
                         "Default: plain BatchNorm, each rank normalising its own part of the batch (faster)")
    dp.add_argument("--ray-address", default=None,
                    help="train through Ray Train on the Ray cluster at this address ('auto': the one this "
                         "machine belongs to; 'local': a new one on this machine)")
    dp.add_argument("--workers-per-node", type=int, default=1,
                    help="with --ray-address: ranks per node (one per GPU)")
    dp.add_argument("--dist-timeout", type=float, default=d.dist_timeout_s,
                    help="seconds a rank waits for the others (rendezvous, each exchange) before it gives up")
    av = t.add_argument_group("avsync task")
    av.add_argument("--shift-s", type=float, default=0.5, help="audio offset of impostor pairs, seconds")
    av.add_argument("--window", type=int, default=9, help="video frames per window")
    av.add_argument("--hard-k", type=int, default=None,
                    help="online hard-pair selection: train on the k hardest genuine and k hardest impostor pairs "
                         "of each batch (default: every pair)")
    t.set_defaults(func=run_train)

    e = commands.add_parser("eval", help="top-1/top-5 and the most confused words of a trained run",
                            description="Score a run on a split of its shards; writes eval-SPLIT.json and "
                                        "confusion-SPLIT.csv into the run (an avsync run: AUC and EER of in-sync vs "
                                        "shifted-audio pairs, avsync-eval-SPLIT.json).", formatter_class=ExamplesHelp)
    e.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="a run folder written by `flowprep train` (under torchrun spell it --run-dir: "
                        "torchrun takes --run for its own --run-path)")
    e.add_argument("--split", default="val", help="val, test or train")
    e.add_argument("--checkpoint", default="best", choices=["best", "last"],
                   help="best validation weights (falls back to last) or the last epoch's")
    e.add_argument("--shards", default=None, help="the shard folder, if it moved since training")
    e.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda or cuda:N")
    e.add_argument("--batch-size", type=int, default=None, help="default: the run's")
    e.add_argument("--workers", type=int, default=None, help="default: the run's")
    e.add_argument("--top", type=int, default=10, help="confused pairs to print")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=run_eval)

    add_report_parser(commands)  # `flowprep report RUN...`: its options live with the report


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        shards=args.shards, out=args.out, frontend=args.frontend, backend=args.backend,
        streams=tuple(s.strip() for s in args.streams.split(",") if s.strip()), fusion=args.fusion,
        fusion_stage=args.fusion_stage, lateral=args.lateral,
        width=args.width, hidden=args.hidden, layers=args.layers, dropout=args.dropout, pretrained=args.pretrained,
        pretrained_video=args.pretrained_video,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, crop=args.crop,
        flip=not args.no_flip, max_steps_per_epoch=args.max_steps_per_epoch, amp=args.amp, device=args.device,
        workers=args.workers, seed=args.seed, resume=args.resume, progress=not args.no_progress,
        sync_bn=args.sync_bn, dist_timeout_s=args.dist_timeout,
    )


def _train_avsync(args: argparse.Namespace) -> int:
    from ..train.avsync import AVSyncConfig, evaluate_avsync, train_avsync

    d = AVSyncConfig()
    cfg = AVSyncConfig(window=args.window, shift_s=args.shift_s, hard_k=args.hard_k, seed=args.seed,
                       epochs=args.epochs if args.epochs != TrainConfig.epochs else d.epochs,
                       batch_size=args.batch_size if args.batch_size != TrainConfig.batch_size else d.batch_size,
                       lr=args.lr if args.lr != TrainConfig.lr else d.lr, device=args.device, amp=args.amp)
    summary = train_avsync(shards=args.shards, config=cfg, out=args.out, progress=not args.no_progress,
                           resume=args.resume)
    if not summary["losses"]:
        print(f"{args.out}: already trained (epoch {summary['epoch']})", file=sys.stderr)
        return 0
    result = {"run": args.out, "steps": len(summary["losses"]), "final_loss": summary["losses"][-1],
              "seconds": summary["seconds"], "windows": summary["windows"]}
    from ..shards.manifest import Manifest

    if "val" in Manifest.load(args.shards).splits():
        result["val"] = {k: v for k, v in evaluate_avsync(args.out, shards=args.shards, split="val",
                                                          device=cfg.device).items() if isinstance(v, (int, float))}
    print(json.dumps(result, indent=1) if args.json else
          f"{args.out}: {result['steps']} steps, final loss {result['final_loss']:.4f}"
          + (f", val AUC {result['val']['auc']:.3f} EER {result['val']['eer']:.3f}" if "val" in result else ""),
          file=None if args.json else sys.stderr)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..train import distributed
    from ..train.trainer import train, train_on_ray

    if args.task == "avsync":
        return _train_avsync(args)
    if args.ray_address:
        summary = train_on_ray(config_from_args(args), None if args.ray_address == "local" else args.ray_address,
                               args.workers_per_node)
    else:
        try:
            summary = train(config_from_args(args))
        finally:
            distributed.teardown()
        if distributed.env_world() > 1 and int(os.environ.get("RANK", "0")) != 0:
            return 0  # rank 0 speaks for the run
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "step_losses"}, indent=1))
        return 0
    if summary["resumed_from_step"]:
        print(f"resumed at step {summary['resumed_from_step']}", file=sys.stderr)
    if not summary["history"]:
        print(f"{summary['run']}: already trained to epoch {summary['epoch']} (raise --epochs to go on)",
              file=sys.stderr)
        return 0
    val = "" if summary["val_top1"] in (None, "") else \
        f", val top-1 {summary['val_top1']:.3f} top-5 {summary['val_top5']:.3f} (best {summary['best_val_top1']:.3f})"
    print(f"{summary['run']}: epoch {summary['epoch']}, step {summary['step']}, train loss "
          f"{summary['train_loss']:.4f}{val}, {summary['clips_per_s']:.1f} clips/s, {summary['seconds']:.0f} s",
          file=sys.stderr)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..train.evaluation import evaluate

    if args.top < 0:
        raise FlowprepError("--top must be 0 or more")
    from ..train import distributed

    try:
        result = evaluate(args.run, args.split, args.checkpoint, args.device, args.batch_size, args.workers,
                          args.shards, progress=not args.no_progress)
    finally:
        distributed.teardown()
    if distributed.env_world() > 1 and int(os.environ.get("RANK", "0")) != 0:
        return 0  # rank 0 speaks for the evaluation
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    if "auc" in result:  # an avsync run
        print(f"{args.run} on {args.split}: {result['pairs']} pairs, AUC {result['auc']:.4f}, "
              f"EER {result['eer']:.4f}, paired accuracy {result['paired_accuracy']:.4f}")
        return 0
    print(f"{args.run} [{result['checkpoint']}, epoch {result['epoch']}] on {args.split}: {result['clips']} clips, "
          f"top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}, loss {result['loss']:.4f}")
    pairs = result["most_confused"][: args.top]
    if pairs:
        print("most confused (true -> predicted: count / clips of the true word):")
        for p in pairs:
            print(f"  {p['true']:>16} -> {p['predicted']:<16} {p['count']:>5} / {p['of']}")
    return 0
