"""Optical flow between consecutive crops: one registry, several backends, compact storage.

ptlflow is imported only when the pwcnet backend is built (importing it takes seconds).
"""

from . import opencv  # noqa: F401  registers dis and farneback
from .base import FlowBackend, available_backends, get_backend, register_backend
from .quantize import dequantize_flow, quantize_flow, quantize_flow_stats

# pwcnet registers itself on import; the import is cheap until the backend is constructed.
from . import pwcnet  # noqa: E402,F401  isort:skip

__all__ = [
    "FlowBackend",
    "available_backends",
    "dequantize_flow",
    "get_backend",
    "quantize_flow",
    "quantize_flow_stats",
    "register_backend",
]
