"""Training speed of each front-end x back-end: clips/s and peak memory for full training steps.

Each configuration runs in a fresh process, so its peak RSS is its own (and its peak CUDA memory). Inputs are random clips
of the shards' types (uint8 gray, int8 flow with its scale) going through the same device-side
normalisation as training; reading is left out (`flowprep bench read` measures it), so the figure
is the model's own ceiling.

    flowprep bench train                                    # CPU, float32, every front-end x back-end
    flowprep bench train --frontends resnet2d,c3d-resnet --backends conv1d --batch-size 2   # some of them
    flowprep bench train --device cuda --precision fp32,amp --batch-size 32 --steps 20   # a GPU node
    flowprep bench train --ranks 2 --frontends r3d18 --backends tcn           # data parallel, gloo on CPU
    flowprep bench train --device cuda --ranks 8 --batch-size 256 --steps 20  # DDP over a node's 8 GPUs (NCCL)

With ``--ranks N`` the configuration runs in N processes joined by torch.distributed (gloo on CPU, NCCL
on GPUs, one GPU each): ``--batch-size`` is the global batch, each rank steps on its share, DDP
averages the gradients, and clips/s counts the global batch. On CPU each rank gets cores/N threads,
so 1 and N ranks use the same cores.

(``python -m flowprep.train.bench`` takes the same options.)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..errors import FlowprepError
from .config import BACKENDS, FRONTENDS


PRECISIONS = ("fp32", "amp")


def train_bench(frontends: tuple[str, ...] = FRONTENDS, streams: tuple[str, ...] = ("gray", "flow"),
                backends: tuple[str, ...] = BACKENDS, fusion: str = "features", batch_size: int = 8,
                frames: int = 29, size: int = 112, steps: int = 3, warmup: int = 1, device: str = "cpu",
                precisions: tuple[str, ...] = ("fp32",), width: float = 1.0, hidden: int = 512,
                threads: int | None = None, ranks: int = 1, on_row=None) -> list[dict[str, Any]]:
    """One row per front-end x back-end x precision ("fp32", "amp": AMP applies on CUDA only):
    clips/s over ``steps`` timed steps (after ``warmup`` untimed ones), seconds per step,
    parameters, peak RSS (and peak CUDA memory on a GPU). ``on_row(row)`` is called as each is measured."""
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise FlowprepError(f"precision {unknown[0]!r}: use fp32 or amp")
    if ranks < 1 or batch_size % ranks:
        raise FlowprepError(f"--batch-size {batch_size} is the global batch: it must divide by --ranks {ranks}")
    for kind, names, known in (("front-end", frontends, FRONTENDS), ("back-end", backends, BACKENDS)):
        wrong = [n for n in names if n not in known]
        if wrong:
            raise FlowprepError(f"{kind} {wrong[0]!r}: use {', '.join(known)}")
    rows = []
    for precision in precisions:
        for frontend in frontends:
            for backend in backends:
                job = dict(frontend=frontend, streams=tuple(streams), backend=backend, fusion=fusion,
                           batch_size=batch_size, frames=frames, size=size, steps=steps, warmup=warmup, device=device,
                           amp=precision == "amp", width=width, hidden=hidden, threads=threads)
                if ranks > 1:
                    rows.append(_measure_ranks(job, ranks))
                else:
                    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
                        rows.append(pool.submit(_measure, job).result())
                if on_row is not None:
                    on_row(rows[-1])
    return rows


def _measure_ranks(job: dict[str, Any], ranks: int) -> dict[str, Any]:
    """The job in ``ranks`` spawned processes of one process group; rank 0's row."""
    import socket
    import tempfile

    import torch.multiprocessing as tmp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        out = f"{folder}/row.json"
        tmp.start_processes(_rank_measure, args=(ranks, port, job, out), nprocs=ranks, start_method="spawn")
        with open(out) as fh:
            return json.load(fh)


def _rank_measure(rank: int, ranks: int, port: int, job: dict[str, Any], out: str) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    if not job["threads"] and not job["device"].startswith("cuda"):
        job = {**job, "threads": max(1, (os.cpu_count() or 1) // ranks)}
    row = _measure(job)
    if rank == 0:
        with open(out, "w") as fh:
            json.dump(row, fh)


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    from torch import nn

    from ..transforms import Normalize
    from .config import TrainConfig
    from .data import model_inputs
    from ..runtime import amp_dtype, autocast, grad_scaler, resolve_device
    from .models import build_model

    from . import distributed

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    ctx, device_name = distributed.setup(job["device"])
    job = {**job, "device": device_name}
    rss_before = _peak_rss_mib()
    cfg = TrainConfig(shards="", out="", frontend=job["frontend"], backend=job["backend"], streams=job["streams"],
                      fusion=job["fusion"], width=job["width"], hidden=job["hidden"], amp=job["amp"],
                      device=job["device"], batch_size=job["batch_size"])
    device = resolve_device(cfg.device)
    low = amp_dtype(cfg.amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = build_model(cfg, 500).to(device)  # LRW's 500 words
    net = model
    if ctx.active:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = grad_scaler(device, low)
    b, t, s = job["batch_size"] // ctx.world, job["frames"], job["size"]
    g = torch.Generator().manual_seed(0)
    batch = {
        "gray": torch.randint(0, 256, (b, t, s, s), generator=g, dtype=torch.uint8),
        "flow": torch.randint(-40, 41, (b, t - 1, 2, s, s), generator=g).to(torch.int8),
        "flow_scale": torch.full((b,), 0.1, dtype=torch.float64),
        "lengths": torch.full((b,), t),
        "label": torch.randint(0, 500, (b,), generator=g),
    }
    normalize = Normalize(0.4, 0.2, 1.0)

    def step() -> None:
        inputs, lengths = model_inputs(batch, cfg.streams, normalize, device)
        with autocast(device, low):
            logits = net(inputs, lengths)
        loss = nn.functional.cross_entropy(logits.float(), batch["label"].to(device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(job["warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(job["steps"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    distributed.barrier(ctx)
    seconds = time.perf_counter() - t0
    row = {
        "frontend": job["frontend"], "streams": ",".join(cfg.streams), "backend": cfg.backend,
        "device": str(device), "precision": str(low).replace("torch.", "") if low else "float32",
        "batch": b * ctx.world, "ranks": ctx.world, "clip": f"{t}x{s}x{s}", "threads": torch.get_num_threads(),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "step_s": round(seconds / job["steps"], 3),
        "clips_per_s": round(b * ctx.world * job["steps"] / seconds, 2),
        "peak_rss_mib": round(_peak_rss_mib()), "rss_before_model_mib": round(rss_before),
    }
    if device.type == "cuda":
        row["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        row["gpu"] = torch.cuda.get_device_name(device)
    distributed.teardown()
    return row


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontends", default=",".join(FRONTENDS), help=f"comma-separated: {', '.join(FRONTENDS)}")
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated: {', '.join(BACKENDS)}")
    p.add_argument("--streams", default="gray,flow", help="gray, flow or gray,flow")
    p.add_argument("--fusion", default="features", choices=["features", "scores"])
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, amp (AMP on CUDA only)")
    p.add_argument("--amp", action="store_true", help="same as --precision amp")
    p.add_argument("--batch-size", type=int, default=8, help="clips per step")
    p.add_argument("--frames", type=int, default=29, help="frames per clip (LRW: 29)")
    p.add_argument("--size", type=int, default=112, help="crop side in pixels")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--width", type=float, default=1.0, help="front-end channel multiplier")
    p.add_argument("--hidden", type=int, default=512, help="LSTM units per direction / TCN channels")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--ranks", type=int, default=1,
                   help="data-parallel processes (DDP; gloo on CPU, NCCL with one GPU each); --batch-size is global")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def run_from_args(a: argparse.Namespace) -> int:
    def names(text: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in text.split(",") if x.strip())

    rows = train_bench(names(a.frontends), names(a.streams), names(a.backends), a.fusion, a.batch_size, a.frames,
                       a.size, a.steps, a.warmup, a.device, ("amp",) if a.amp else names(a.precision), a.width,
                       a.hidden, a.threads, a.ranks, on_row=None if a.json else _print_row)  # each row as it comes
    if a.json:
        print(json.dumps(rows, indent=1))
    return 0


def _print_row(r: dict[str, Any]) -> None:
    memory = f"peak RSS {r['peak_rss_mib']} MiB (before the model {r['rss_before_model_mib']})"
    if "peak_cuda_mib" in r:
        memory += f", peak CUDA {r['peak_cuda_mib']} MiB on {r['gpu']}"
    print(f"{r['frontend']:>10} {r['backend']:<6} {r['streams']} {r['precision']} on {r['device']} "
          f"({r.get('ranks', 1)} rank(s) x {r['threads']} threads), batch {r['batch']} of {r['clip']}, {r['params_m']} M params: "
          f"{r['clips_per_s']} clips/s, {r['step_s']} s/step; {memory}", flush=True)


def add_bench_train_parser(kinds) -> None:
    """``flowprep bench train`` (``kinds``: the subcommands of ``flowprep bench``)."""
    p = kinds.add_parser("train", help="training clips/s and peak memory per front-end x back-end",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p)
    p.set_defaults(func=run_from_args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flowprep.train.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
