"""`--flow-precision auto`: the PWC-Net arithmetic that is fastest on the device that runs it, measured.

Whether reduced precision pays depends on the chip, not on the software: on CPUs with AMX
(amx_bf16) bf16 autocast made the fast PWC-Net 4.9-6.5x faster than ptlflow's per-pair call, on
AVX2-only CPUs it was 7x slower than fp32 (README: Flow backends). A CPU flag list would guess;
a probe knows. So the flow worker, where flow will run and before its first batch, times the fast
PWC-Net for about a second in each candidate precision (fp32 and bf16 on a CPU, fp32 and fp16 on
CUDA) on a small batch of the bench's textured pairs, and keeps the faster. fp32 wins ties (a
reduced precision must be clearly faster: it moves the flow, see `flowprep bench flow`'s EPE
column). The choice and its figures go to the manifest and the build summary.
"""

from __future__ import annotations

import dataclasses
import time

# a reduced precision is taken only when it gives this many times fp32's pairs/s
MARGIN = 1.15
PROBE_PAIRS = 1  # per call: one pair, so a call in a slow precision stays under a second


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # what the build uses: fp32, bf16 or fp16
    device: str
    pairs_per_s: dict[str, float]  # probed, per candidate

    def note(self) -> str:
        """One line for the summary: the choice and the figures it rests on."""
        rates = ", ".join(f"{k} {v:.1f}" for k, v in self.pairs_per_s.items())
        return f"{self.precision} (--flow-precision auto on {self.device}: probe pairs/s {rates})"


def candidates(device: str) -> tuple[str, str]:
    return ("fp32", "fp16") if device.startswith("cuda") else ("fp32", "bf16")


def probe(ckpt: str, device: str, seconds: float = 1.0, pairs: int = PROBE_PAIRS) -> dict[str, float]:
    """The fast PWC-Net's pairs/s on ``device`` in each candidate precision, about ``seconds`` in all
    (each one warmed up by one call first; at least one timed call each, however slow)."""
    from . import get_backend
    from .bench import frames

    prev, nxt = frames(pairs)
    rates: dict[str, float] = {}
    for precision in candidates(device):
        backend = get_backend("pwcnet", ckpt=ckpt, device=device, batch_pairs=pairs, dtype=precision)
        backend(prev, nxt)  # allocations, kernel selection: not the steady cost
        calls, t0 = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - t0 < seconds / 2:
            backend(prev, nxt)
            calls += 1
        rates[precision] = calls * pairs / (time.perf_counter() - t0)
    return rates


def choose(rates: dict[str, float], device: str) -> PrecisionChoice:
    """The reduced precision when it is at least MARGIN times as fast as fp32, else fp32."""
    reduced = [p for p in rates if p != "fp32"]
    best = max(reduced, key=lambda p: rates[p]) if reduced else "fp32"
    pick = best if best != "fp32" and rates[best] >= MARGIN * rates.get("fp32", 0.0) else "fp32"
    return PrecisionChoice(pick, device, {k: round(v, 2) for k, v in rates.items()})


def resolve(ckpt: str, device: str, seconds: float = 1.0) -> PrecisionChoice:
    """Probe on ``device`` and choose (see the module's doc)."""
    return choose(probe(ckpt, device, seconds), device)
