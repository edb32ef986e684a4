"""Optical flow between consecutive crops: one registry, several backends, compact storage.

    backend = get_backend("dis", preset="medium")          # or "farneback", "pwcnet"
    flow = backend(prev, next)                              # uint8 [N,H,W] x2 -> float32 [N,2,H,W] px
    q, saturated = quantize_flow_stats(flow, "int8", 0.1)   # what a shard stores

Importing this package is cheap: ptlflow (seconds to import) loads when a pwcnet backend is built.
"""

from .base import FlowBackend, available_backends, get_backend, register_backend
from .quantize import FLOW_DTYPES, dequantize_flow, quantize_flow, quantize_flow_stats

# Importing the backend modules registers them.
from . import opencv  # noqa: E402,F401  isort:skip
from . import pwcnet  # noqa: E402,F401  isort:skip

__all__ = [
    "FLOW_DTYPES",
    "FlowBackend",
    "available_backends",
    "dequantize_flow",
    "get_backend",
    "quantize_flow",
    "quantize_flow_stats",
    "register_backend",
]
