"""The flow-backend contract and its registry.

    backend(prev: uint8[N,H,W], next: uint8[N,H,W]) -> float32[N,2,H,W]

Channel 0 is dx, channel 1 is dy, in pixels, forward flow: the content at p in ``prev`` is at
p + flow(p) in ``next``, i.e. next(p + flow(p)) ~= prev(p).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import FlowprepError

_REGISTRY: dict[str, Callable[..., "FlowBackend"]] = {}


def register_backend(name: str):
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory

    return wrap


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str, **options: Any) -> "FlowBackend":
    """A flow backend by name; options are the backend's own (preset, ckpt, device, batch_pairs)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise FlowprepError(f"unknown flow backend {name!r}; available: {', '.join(available_backends())}") from None
    return factory(**options)


class FlowBackend:
    name = "base"
    device = "cpu"

    def __call__(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        prev, next = _check_pairs(prev, next)
        if len(prev) == 0:
            return np.zeros((0, 2) + prev.shape[1:], np.float32)
        return self.compute(prev, next)

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device}


def _check_pairs(prev: np.ndarray, next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prev, next = np.asarray(prev), np.asarray(next)
    if prev.ndim != 3 or next.shape != prev.shape:
        raise FlowprepError(f"flow needs two uint8 [N,H,W] stacks of one shape, got {prev.shape} and {next.shape}")
    if prev.dtype != np.uint8 or next.dtype != np.uint8:
        raise FlowprepError(f"flow needs uint8 frames, got {prev.dtype} and {next.dtype}")
    return np.ascontiguousarray(prev), np.ascontiguousarray(next)
