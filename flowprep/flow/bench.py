"""`flowprep bench flow`: pairs/s of every flow backend at 112x112, in one process, one run.

Measured, per thread count: ptlflow's own PWC-Net forward one pair per call (the reference), the
fast PWC-Net path at each batch size and dtype, OpenCV DIS (medium) and Farneback, and any ptlflow
model asked for by name (``ptlflow:raft_small``: seeded random weights, speed does not depend on
them) at each batch size, next to PWC-Net. Each backend is built through the registry from its
name and options; nothing here knows one backend from another beyond the options it passes. Rounds
alternate the configurations, so a machine whose load changes during the run slows all of them
alike; pairs/s is the median over rounds of (pairs per call / median call time), and the
speed-up against ptlflow is the median over rounds of the ratio to the reference measured in
the same round at the same thread count (a busy, shared machine moves both together).

Memory: on CUDA the peak of ``torch.cuda.max_memory_allocated`` per configuration; on the CPU the
peak resident set size of the process (VmHWM, reset before each configuration where Linux
allows it, else the process's high-water mark so far from ``resource.getrusage``).

On CUDA every call goes through the backend's pinned-memory, multi-stream path with
``batches_per_call`` batches per call, so uploads and downloads overlap compute as in a build.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SIZE = 112


@dataclass
class Case:
    backend: str  # a registry name: "pwcnet", "dis", "farneback", "ptlflow:raft_small"
    impl: str  # "fast", "ptlflow" (PWC-Net's two forwards), "opencv", "model" (a ptlflow model)
    threads: int
    batch: int
    dtype: str = "fp32"
    compile: bool = False
    options: dict = field(default_factory=dict)  # the backend's options (weights added when it is built)
    times: list[float] = field(default_factory=list)  # seconds per pair, one entry per round
    ratios: list[float] = field(default_factory=list)  # ptlflow's seconds per pair / ours, same round and threads
    peak_mib: float = 0.0
    base_mib: float = 0.0  # resident before the measurement (CPU) or allocated (CUDA)
    error: str | None = None

    @property
    def label(self) -> str:
        name = {"fast": "pwcnet fast", "ptlflow": "pwcnet ptlflow"}.get(self.impl, self.backend)
        return name + (" +compile" if self.compile else "")

    @property
    def weighted(self) -> bool:
        """Whether the backend takes weights (``ckpt``): a network, not OpenCV."""
        return self.impl != "opencv"


def frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n pairs of 112x112 uint8 frames: windows of a smooth random texture, the second shifted
    by up to 3 px (content for flow to find; speed does not depend on it)."""
    import cv2

    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (512, 512)).astype(np.float32), (0, 0), 2.5)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    ys, xs = rng.integers(8, 512 - SIZE - 8, (2, n))
    dys, dxs = rng.integers(-3, 4, (2, n))
    prev = np.stack([texture[y:y + SIZE, x:x + SIZE] for y, x in zip(ys, xs)])
    nxt = np.stack([texture[y + dy:y + dy + SIZE, x + dx:x + dx + SIZE] for y, x, dy, dx in zip(ys, xs, dys, dxs)])
    return prev, nxt


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _proc_status_mib(key: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB; None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_mib() -> float:
    return _proc_status_mib("VmRSS") or 0.0


def _peak_rss_mib() -> float:
    peak = _proc_status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _weights(ckpt: str | None, tmp: str) -> tuple[str, str]:
    """(path, what) of the weights to use: speed does not depend on their values."""
    from . import pwcnet

    if ckpt and ckpt != "random":
        return str(pwcnet.resolve_checkpoint(ckpt)), ckpt
    if ckpt is None:
        cached = pwcnet.checkpoint_cache_dir() / pwcnet.NAMED_CHECKPOINTS["things"].rsplit("/", 1)[1]
        if cached.is_file():
            return str(cached), "things"
    return str(pwcnet.save_random_pwcnet_checkpoint(Path(tmp) / "random.ckpt", seed=0)), "random init (seed 0)"


def flow_bench(
    device: str = "auto",
    batch_sizes: tuple[int, ...] | None = None,
    dtypes: tuple[str, ...] | None = None,
    threads: tuple[int, ...] | None = None,
    seconds: float = 2.0,
    rounds: int = 3,
    backends: tuple[str, ...] = ("fast", "ptlflow", "dis", "farneback"),
    ckpt: str | None = None,
    channels_last: bool = True,
    compile: bool = False,
    batches_per_call: int = 4,
    log=None,
) -> dict:
    """Measure; returns {"device", "weights", "cases": [dict per configuration]}."""
    import torch

    from . import get_backend
    from ..runtime import resolve_device

    dev = str(resolve_device(device))
    cuda = dev.startswith("cuda")
    if batch_sizes is None:
        batch_sizes = (64, 256, 1024) if cuda else (1, 8, 32)
    if dtypes is None:
        dtypes = ("fp32", "fp16", "bf16") if cuda else ("fp32",)
    if threads is None:
        threads = tuple(sorted({1, os.cpu_count() or 1}))
    log = log or (lambda *a: None)

    cases: list[Case] = []
    models = [b for b in backends if b.startswith("ptlflow:")]
    for t in threads:
        if "ptlflow" in backends:
            cases.append(Case("pwcnet", "ptlflow", t, 1, options=dict(device=dev, batch_pairs=1, impl="ptlflow")))
        if "fast" in backends:
            for dt in dtypes:
                for b in batch_sizes:
                    for comp in (False, True) if compile else (False,):
                        cases.append(Case("pwcnet", "fast", t, b, dt, comp, dict(
                            device=dev, batch_pairs=b, impl="fast", dtype=dt, channels_last=channels_last, compile=comp)))
        if "dis" in backends:
            cases.append(Case("dis", "opencv", t, 32, options=dict(preset="medium", threads=t)))
        if "farneback" in backends:
            cases.append(Case("farneback", "opencv", t, 32, options=dict(threads=t)))
        for name in models:
            for b in batch_sizes:
                cases.append(Case(name, "model", t, b, options=dict(device=dev, batch_pairs=b)))
    # per thread count: the reference first, then the rest, smaller batches first (a process-wide
    # high-water mark then still reads per configuration); each round's speed-up is taken against
    # the reference measured moments before, at the same thread count
    cases.sort(key=lambda c: (c.threads, c.impl != "ptlflow", c.batch))

    n_max = max(c.batch for c in cases) * (batches_per_call if cuda else 1)
    prev, nxt = frames(n_max)
    with tempfile.TemporaryDirectory() as tmp:
        path, weights = _weights(ckpt, tmp) if any(c.backend == "pwcnet" for c in cases) else ("", "-")
        ckpts = {"pwcnet": path, **{m: _model_weights(m, tmp) for m in models}}
        built: dict = {}

        def backend_for(c: Case):
            key = (c.backend, c.impl, c.dtype, c.compile, c.batch, c.threads)
            if key not in built:
                extra = {"ckpt": ckpts[c.backend]} if c.weighted else {}
                built[key] = get_backend(c.backend, **c.options, **extra)
            return built[key]

        for r in range(rounds):
            for c in cases:
                if c.error:
                    continue
                torch.set_num_threads(c.threads)
                n = c.batch * (batches_per_call if cuda and c.weighted else 1)
                a, b = prev[:n], nxt[:n]
                try:
                    backend = backend_for(c)
                    if r == 0:
                        backend(a, b)  # warm-up: allocator, cudnn.benchmark, torch.compile
                    if cuda:
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                    reset = _reset_peak_rss()
                    base = torch.cuda.memory_allocated() / 2**20 if cuda else _rss_mib()
                    calls, t_end = [], time.perf_counter() + seconds
                    while len(calls) < 2 or time.perf_counter() < t_end:
                        t0 = time.perf_counter()
                        backend(a, b)
                        calls.append(time.perf_counter() - t0)
                    c.times.append(statistics.median(calls) / n)
                    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mib()
                    c.peak_mib = max(c.peak_mib, peak) if (cuda or reset) else peak
                    c.base_mib = base
                    ref_case = next((x for x in cases if x.impl == "ptlflow" and x.threads == c.threads), None)
                    if ref_case is not None and len(ref_case.times) == r + 1:
                        c.ratios.append(ref_case.times[-1] / c.times[-1])
                except Exception as exc:  # noqa: BLE001 - a configuration that cannot run is reported, not fatal
                    c.error = f"{type(exc).__name__}: {str(exc)[:160]}"
                    if cuda:
                        torch.cuda.empty_cache()
                log(f"round {r + 1}/{rounds} {c.label:<16} threads {c.threads} batch {c.batch:>4} {c.dtype}: "
                    + (c.error or f"{1 / c.times[-1]:.1f} pairs/s"))
        deviation = _deviation(cases, backend_for, ckpts, dev, prev, nxt)

    ref = {c.threads: statistics.median(c.times) for c in cases if c.impl == "ptlflow" and c.times}
    out = []
    for c in cases:
        row = {"backend": c.label, "device": dev if c.weighted else "cpu", "threads": c.threads,
               "batch": c.batch, "dtype": c.dtype, "error": c.error}
        if c.times:
            per_pair = statistics.median(c.times)
            row.update(pairs_per_s=round(1 / per_pair, 2), ms_per_pair=round(per_pair * 1e3, 3),
                       rounds_pairs_per_s=[round(1 / t, 2) for t in c.times],
                       peak_mib=round(c.peak_mib, 1), added_mib=round(c.peak_mib - c.base_mib, 1),
                       vs_ptlflow_per_pair=round(statistics.median(c.ratios), 2) if c.ratios else None,
                       vs_ptlflow_of_medians=round(ref[c.threads] / per_pair, 2) if c.threads in ref else None,
                       epe_vs_ptlflow_px=deviation.get(id(c)))
        out.append(row)
    return {
        "device": dev,
        "device_name": torch.cuda.get_device_name(dev) if cuda else _cpu_name(),
        "torch": torch.__version__,
        "weights": weights + (f"; ptlflow models: random init (seed 0)" if models else ""),
        "channels_last": channels_last,
        "peak_memory": "torch.cuda.max_memory_allocated" if cuda else "peak RSS of the process (VmHWM)",
        "ptlflow_reference": "ptlflow's forward, one pair per call, at the same thread count",
        "deviation": f"mean end-point difference (px) from ptlflow's own fp32 forward, one pair per call, on "
                     f"{DEVIATION_PAIRS} of the pairs",
        "cases": out,
    }


DEVIATION_PAIRS = 8


def _model_weights(model: str, tmp: str) -> str:
    """A seeded random checkpoint of a ptlflow model: its speed does not depend on the values."""
    from .ptlflow_models import save_random_checkpoint

    return str(save_random_checkpoint(Path(tmp) / f"{model.partition(':')[2]}-random.ckpt",
                                      model.partition(":")[2], seed=0))


def _deviation(cases: list[Case], backend_for, ckpts: dict, dev: str, prev, nxt) -> dict[int, float]:
    """How far each network's flow is from its ptlflow forward in fp32, one pair per call, on the
    same pairs (reduced precision and batching show here; fp32 PWC-Net should read ~1e-5)."""
    from . import get_backend

    a, b = prev[:DEVIATION_PAIRS], nxt[:DEVIATION_PAIRS]
    references: dict = {}
    out = {}
    for c in cases:
        if not c.weighted or c.error:
            continue
        if c.backend not in references:
            ref = get_backend(c.backend, ckpt=ckpts[c.backend], device=dev, batch_pairs=1,
                              **({"impl": "ptlflow"} if c.backend == "pwcnet" else {}))
            references[c.backend] = np.concatenate([ref(a[i:i + 1], b[i:i + 1]) for i in range(len(a))])
        out[id(c)] = round(float(np.linalg.norm(backend_for(c)(a, b) - references[c.backend], axis=1).mean()), 5)
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return f"cpu ({os.cpu_count()} CPUs)"


def print_table(figures: dict, file=sys.stdout) -> None:
    print(f"flow at {SIZE}x{SIZE} on {figures['device']} ({figures['device_name']}), torch {figures['torch']}, "
          f"PWC-Net weights: {figures['weights']}, channels_last={figures['channels_last']}", file=file)
    print(f"{'backend':<22}{'threads':>8}{'batch':>7}{'dtype':>6}{'pairs/s':>10}{'ms/pair':>10}"
          f"{'x ptlflow':>10}{'peak MiB':>10}{'+MiB':>7}{'EPE px':>9}   pairs/s per round", file=file)
    for r in figures["cases"]:
        if r.get("error"):
            print(f"{r['backend']:<22}{r['threads']:>8}{r['batch']:>7}{r['dtype']:>6}   {r['error']}", file=file)
            continue
        vs = f"{r['vs_ptlflow_per_pair']:.2f}" if r.get("vs_ptlflow_per_pair") is not None else "-"
        epe = f"{r['epe_vs_ptlflow_px']:.4f}" if r.get("epe_vs_ptlflow_px") is not None else "-"
        print(f"{r['backend']:<22}{r['threads']:>8}{r['batch']:>7}{r['dtype']:>6}{r['pairs_per_s']:>10.1f}"
              f"{r['ms_per_pair']:>10.2f}{vs:>10}{r['peak_mib']:>10.0f}{r['added_mib']:>7.0f}{epe:>9}   "
              + " ".join(f"{v:.1f}" for v in r["rounds_pairs_per_s"]), file=file)
    print(f"x ptlflow: median over rounds of the speed-up against {figures['ptlflow_reference']}, measured "
          f"in the same round; peak memory: {figures['peak_memory']} (+MiB: above what was in use before); "
          f"EPE px: {figures['deviation']}", file=file)
