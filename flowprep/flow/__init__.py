"""Optical flow between consecutive crops: one registry, several backends, compact storage.

    backend = get_backend("dis", preset="medium")          # or "farneback", "pwcnet", "ptlflow:raft_small"
    backend = make(FlowConfig(backend="dis"))               # what a build uses: built from its settings
    backend_class("pwcnet").runs_in                         # "actor": its own batched actor; "crop": in the CPU worker
    flow = backend(prev, next)                              # uint8 [N,H,W] x2 -> float32 [N,2,H,W] px
    q, saturated = quantize_flow_stats(flow, "int8", 0.1)   # what a shard stores

Importing this package is cheap: ptlflow (seconds to import) loads when a pwcnet or ptlflow backend is built.
"""

from .base import FlowBackend, available_backends, backend_class, check, get_backend, make, pair_batches, register_backend
from .quantize import FLOW_DTYPES, dequantize_flow, quantize_flow, quantize_flow_stats

# Importing the backend modules registers them.
from . import opencv  # noqa: E402,F401  isort:skip
from . import pwcnet  # noqa: E402,F401  isort:skip
from . import ptlflow_models  # noqa: E402,F401  isort:skip

__all__ = [
    "FLOW_DTYPES",
    "FlowBackend",
    "available_backends",
    "backend_class",
    "check",
    "dequantize_flow",
    "get_backend",
    "make",
    "pair_batches",
    "quantize_flow",
    "quantize_flow_stats",
    "register_backend",
]
