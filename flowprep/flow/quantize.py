"""Store flow compactly: integers in units of ``scale`` pixels, saturating at the type's range.

    q = quantize_flow(flow, "int8", scale=0.1)       # round(flow / 0.1), clipped to -127..127
    flow ~= dequantize_flow(q, 0.1)                  # error <= 0.05 px where nothing saturated

The integer range is symmetric (-127..127, -32767..32767): a horizontal flip negates dx, and the
negation of every stored value must fit. float16 stores pixels and ignores ``scale``. Values that
do not fit (beyond the range, or not finite) count as saturated: NaN is stored as 0, +-inf and
large values at the range's ends.
"""

from __future__ import annotations

import numpy as np

from ..errors import FlowprepError

_INT_TYPES = {"int8": np.int8, "int16": np.int16}
FLOW_DTYPES = ("int8", "int16", "float16")


def quantize_flow_stats(flow: np.ndarray, dtype: str = "int8", scale: float = 0.1) -> tuple[np.ndarray, int]:
    """(stored array, number of values that saturated)."""
    flow = np.asarray(flow, np.float32)
    if dtype == "float16":
        bad = ~np.isfinite(flow) | (np.abs(flow) > np.finfo(np.float16).max)
        stored = np.nan_to_num(flow).clip(-np.finfo(np.float16).max, np.finfo(np.float16).max).astype(np.float16)
        return stored, int(np.count_nonzero(bad))
    if dtype not in _INT_TYPES:
        raise FlowprepError(f"unknown flow dtype {dtype!r}; use {', '.join(FLOW_DTYPES)}")
    if not scale > 0:
        raise FlowprepError(f"flow scale must be positive, got {scale}")
    limit = np.iinfo(_INT_TYPES[dtype]).max
    units = np.rint(flow / np.float32(scale))
    saturated = int(np.count_nonzero(~(np.abs(units) <= limit)))  # NaN compares False: counted
    stored = np.clip(np.nan_to_num(units, nan=0.0), -limit, limit).astype(_INT_TYPES[dtype])
    return stored, saturated


def quantize_flow(flow: np.ndarray, dtype: str = "int8", scale: float = 0.1) -> np.ndarray:
    """Only the stored array of ``quantize_flow_stats``."""
    return quantize_flow_stats(flow, dtype, scale)[0]


def dequantize_flow(stored: np.ndarray, scale: float) -> np.ndarray:
    """Pixels as float32. Floating-point storage already holds pixels: ``scale`` applies to integers only."""
    stored = np.asarray(stored)
    if np.issubdtype(stored.dtype, np.floating):
        return stored.astype(np.float32)
    return stored.astype(np.float32) * np.float32(scale)
