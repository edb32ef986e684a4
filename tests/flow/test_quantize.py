"""Stored flow: integers in units of ``scale`` px, saturating and counting what saturated."""

from __future__ import annotations

import numpy as np
import pytest

from flowprep.errors import FlowprepError
from flowprep.flow import dequantize_flow, quantize_flow, quantize_flow_stats


def some_flow(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, (4, 2, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("dtype,scale,limit", [("int8", 0.1, 12.7), ("int16", 0.01, 327.67), ("int8", 0.25, 31.75)])
def test_round_trip_error_is_half_a_unit_and_saturation_is_counted(dtype, scale, limit):
    flow = some_flow()
    flow[0, 0, 0, :3] = [limit + 0.2, -limit - 50, 1e9]  # beyond the range, both signs
    q, saturated = quantize_flow_stats(flow, dtype, scale)
    assert q.dtype == np.dtype(dtype) and q.shape == flow.shape
    back = dequantize_flow(q, scale)
    assert back.dtype == np.float32
    inside = np.abs(flow) <= limit
    assert np.abs(back - flow)[inside].max() <= scale / 2 * (1 + 1e-5)
    assert saturated == int(np.count_nonzero(~inside)) >= 3
    np.testing.assert_allclose(back[0, 0, 0, :3], [limit, -limit, limit], rtol=1e-6)
    # symmetric range: negating dx (a horizontal flip) never overflows
    assert q.min() == -q.max() == -np.iinfo(dtype).max
    np.testing.assert_array_equal(quantize_flow(flow, dtype, scale), q)


def test_rounding_is_to_nearest_unit():
    flow = np.float32([0.04, 0.06, -0.04, -0.06, 0.149, 0.151])
    np.testing.assert_array_equal(quantize_flow(flow, "int8", 0.1), [0, 1, 0, -1, 1, 2])


def test_non_finite_values_count_as_saturated():
    flow = np.float32([1.0, np.nan, np.inf, -np.inf])
    q, saturated = quantize_flow_stats(flow, "int8", 0.1)
    assert saturated == 3 and q.tolist() == [10, 0, 127, -127]
    h, saturated16 = quantize_flow_stats(np.float32([1.0, np.nan, 1e6]), "float16")
    assert saturated16 == 2 and h.tolist() == [1.0, 0.0, 65504.0]


def test_float16_stores_pixels_and_ignores_scale():
    flow = some_flow()
    h, saturated = quantize_flow_stats(flow, "float16", scale=0.1)
    assert h.dtype == np.float16 and saturated == 0
    for scale in (1.0, 0.1):  # scale applies to integers only
        back = dequantize_flow(h, scale)
        assert np.abs(back - flow).max() <= np.abs(flow).max() * 2.0**-11


def test_bad_arguments_are_errors():
    with pytest.raises(FlowprepError, match="use int8, int16, float16"):
        quantize_flow(some_flow(), "uint8")
    with pytest.raises(FlowprepError, match="positive"):
        quantize_flow(some_flow(), "int8", 0.0)
