"""Several processes, one result: the process group, which clips each rank reads, and the reductions.

A distributed run must give what one process gives with the same global batch. Three things make
that hold here: the order of an epoch is drawn from (seed, epoch) alone and every global batch is cut
into equal per-rank slices (so two ranks of B/2 clips see exactly the clips of one step of B);
augmentation is seeded per sample (data.EpochView), not per worker or rank; and the loss is the
sum over the global batch divided by its size, scaled so that DDP's mean over ranks gives that
(a short last batch is weighted by its counts, not by ranks). Evaluation shards a split into
uneven contiguous parts and gathers per-clip rows with their sizes: nothing dropped, nothing repeated.

The group comes from the environment torchrun (or Ray Train, which sets it up itself) provides:
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. NCCL on GPUs, gloo on CPUs. Without those
variables a run is one process and nothing here costs anything.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import sys
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..errors import FlowprepError

# Seconds a rank waits for the others at the rendezvous and in each collective operation.
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def setup(device_name: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[Context, str]:
    """Join the process group the environment describes (once per process) and say which device
    this rank uses: ``cuda`` becomes ``cuda:LOCAL_RANK`` under several ranks."""
    if dist.is_available() and dist.is_initialized():  # Ray Train (or a caller) made the group
        ctx = Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0") or 0))
    elif env_world() > 1:
        ctx = Context(int(os.environ.get("RANK", "0")), env_world(), int(os.environ.get("LOCAL_RANK", "0") or 0))
        gpu = _wants_cuda(device_name)
        if gpu:
            torch.cuda.set_device(ctx.local_rank)
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        try:
            with _quiet_stderr():  # torch's C++ layer logs every retry of the rendezvous there
                dist.init_process_group("nccl" if gpu else "gloo", rank=ctx.rank, world_size=ctx.world,
                                        timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError, TimeoutError, OSError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise FlowprepError(f"rank {ctx.rank} of {ctx.world} could not join the other ranks at {where} within "
                                f"{timeout_s:.0f} s ({reason}); check MASTER_ADDR/MASTER_PORT and that every rank "
                                "was started (torchrun --nnodes/--node-rank), then rerun with --resume") from None
    else:
        return Context(), device_name
    if _wants_cuda(device_name) and ctx.active:
        device_name = f"cuda:{ctx.local_rank}"
    return ctx, device_name


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to /dev/null for a while (C++ code writes there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _wants_cuda(device_name: str) -> bool:
    return device_name == "cuda" or device_name.startswith("cuda:") or \
        (device_name == "auto" and torch.cuda.is_available())


def teardown() -> None:
    """Leave the group this process made (Ray Train closes its own)."""
    if dist.is_available() and dist.is_initialized() and "FLOWPREP_RAY_TRAIN" not in os.environ:
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.active:
        dist.barrier()


def check_batch(global_batch: int, ctx: Context) -> int:
    """Clips per rank and step; the global batch must divide by the ranks."""
    if global_batch % ctx.world:
        raise FlowprepError(f"--batch-size {global_batch} is the global batch and does not divide by {ctx.world} "
                            f"ranks: use a multiple of {ctx.world}")
    return global_batch // ctx.world


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The clips of an epoch in training order: drawn from (seed, epoch) only, the same on every rank."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


@dataclass(frozen=True)
class Step:
    indices: list[int]  # this rank's clips (one stand-in clip, weighted zero, when it has none)
    real: int  # how many of ``indices`` count
    total: int  # clips in the global batch, over every rank


def train_plan(n: int, global_batch: int, ctx: Context, seed: int, epoch: int) -> list[Step]:
    """This rank's part of each global batch of an epoch. A batch of B is cut into ``world`` slices of
    B/world in rank order; a short last batch into near-equal slices (a rank left without a clip
    reads one and weighs it zero, so every rank still takes part in the step)."""
    order = epoch_order(n, seed, epoch)
    steps = []
    for start in range(0, n, global_batch):
        batch = order[start:start + global_batch]
        lo, hi = _part(len(batch), ctx)
        mine = batch[lo:hi]
        steps.append(Step(mine or batch[:1], len(mine), len(batch)))
    return steps


def _part(n: int, ctx: Context) -> tuple[int, int]:
    """Rank's contiguous share of n items: sizes differ by at most one, the larger ones first."""
    base, extra = divmod(n, ctx.world)
    lo = ctx.rank * base + min(ctx.rank, extra)
    return lo, lo + base + (1 if ctx.rank < extra else 0)


def eval_indices(n: int, ctx: Context) -> range:
    """This rank's clips of a split for evaluation: a contiguous part, every clip once over all ranks."""
    lo, hi = _part(n, ctx)
    return range(lo, hi)


class PlanSampler(torch.utils.data.Sampler):
    """A batch sampler over fixed lists of indices (the plan of an epoch)."""

    def __init__(self, batches: Sequence[Sequence[int]]):
        self.batches = [list(b) for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def loss_scale(step: Step, ctx: Context) -> float:
    """Multiply a rank's summed per-clip loss by this: DDP averages the ranks' gradients, and
    world * sum_rank / total averaged over ranks is the mean over the global batch."""
    return ctx.world / step.total


def _comm_device() -> torch.device:
    """Where the group's tensors must live: the rank's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_across(values: Sequence[float], ctx: Context) -> list[float]:
    """Element-wise sum of a few numbers over every rank (float64)."""
    if not ctx.active:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(rows: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Every rank's rows ([n_r, C], n_r may differ and be 0) stacked in rank order on every rank."""
    if not ctx.active:
        return rows
    home, rows = rows.device, rows.to(_comm_device())
    backend_device = rows.device
    size = torch.tensor([rows.shape[0]], dtype=torch.int64, device=backend_device)
    sizes = [torch.zeros_like(size) for _ in range(ctx.world)]
    dist.all_gather(sizes, size)
    longest = max(int(s) for s in sizes)
    padded = rows.new_zeros((max(longest, 1),) + tuple(rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    parts = [torch.zeros_like(padded) for _ in range(ctx.world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)]).to(home)


def broadcast_flag(flag: bool, ctx: Context) -> bool:
    """Rank 0's flag on every rank."""
    if not ctx.active:
        return flag
    t = torch.tensor([1 if flag else 0], device=_comm_device())
    dist.broadcast(t, 0)
    return bool(t.item())


def steps_per_epoch(n: int, global_batch: int, cap: int | None) -> int:
    steps = math.ceil(n / global_batch)
    return min(steps, cap) if cap else steps


def elastic_restart() -> bool:
    """True in a process torchrun restarted after a rank failed (--max-restarts)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def lost_a_rank(exc: BaseException) -> bool:
    """An error of the group's communication (a peer closed, a collective timed out), not of the model."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        word in text for word in ("Connection closed by peer", "Connection reset", "gloo", "NCCL", "timed out",
                                  "Broken pipe"))


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) that passes gradients back the same way: each rank's sums feed every rank's loss."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics span every rank's part of the batch, for CPU (gloo) runs:
    torch's SyncBatchNorm works on GPUs only. Sums travel through a differentiable all_reduce, so the
    backward pass gets the cross-rank terms too. Same parameters and buffers as BatchNorm (checkpoints
    load either way)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64, device=x.device)
        dist.all_reduce(count)
        n = float(count.item())
        # two passes (mean, then squares about it): E[x^2] - mean^2 cancels badly when |mean| >> std
        mean = _SumOverRanks.apply(x.sum(dims, dtype=torch.float64)) / n
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.to(x.dtype).view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims, dtype=torch.float64)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - factor).add_(mean.to(x.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_((var * n / max(n - 1, 1)).to(x.dtype), alpha=factor)
        y = centred * torch.rsqrt(var.to(x.dtype).view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm statistics over the global batch: torch's SyncBatchNorm on GPUs, GlobalBatchNorm on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(model, name, new)
        else:
            sync_batchnorm(child, device)
    return model
