"""Store flow compactly: integers in units of ``scale`` pixels, saturating at the type's range."""

from __future__ import annotations

import numpy as np

from ..errors import FlowprepError

_INT_TYPES = {"int8": np.int8, "int16": np.int16}


def quantize_flow_stats(flow: np.ndarray, dtype: str = "int8", scale: float = 0.1) -> tuple[np.ndarray, int]:
    """(stored array, number of values that saturated). float16 ignores ``scale`` (stores pixels)."""
    if dtype == "float16":
        return flow.astype(np.float16), int(np.count_nonzero(np.abs(flow) > np.finfo(np.float16).max))
    if dtype not in _INT_TYPES:
        raise FlowprepError(f"unknown flow dtype {dtype!r}; use int8, int16 or float16")
    if scale <= 0:
        raise FlowprepError(f"flow scale must be positive, got {scale}")
    # symmetric range (-127..127 for int8): a horizontal flip negates dx, and -(-128) does not fit
    limit = np.iinfo(_INT_TYPES[dtype]).max
    units = np.rint(flow / np.float32(scale))
    saturated = int(np.count_nonzero(np.abs(units) > limit))
    return np.clip(units, -limit, limit).astype(_INT_TYPES[dtype]), saturated


def quantize_flow(flow: np.ndarray, dtype: str = "int8", scale: float = 0.1) -> np.ndarray:
    return quantize_flow_stats(flow, dtype, scale)[0]


def dequantize_flow(stored: np.ndarray, scale: float) -> np.ndarray:
    """Pixels as float32 (scale is 1 for float16 storage)."""
    return stored.astype(np.float32) * np.float32(scale)
