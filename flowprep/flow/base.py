"""The flow-backend contract and its registry.

    backend(prev: uint8[N,H,W], next: uint8[N,H,W]) -> float32[N,2,H,W]

Channel 0 is dx, channel 1 is dy, in pixels, forward flow: the content at p in ``prev`` is at
p + flow(p) in ``next``, i.e. next(p + flow(p)) ~= prev(p).

A backend is rebuilt from its name and options, never copied: pickling one (a Ray task argument,
an actor's constructor argument) sends ``(name, options)`` and the receiving process constructs
it again, loading any model there.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..errors import FlowprepError

_REGISTRY: dict[str, type["FlowBackend"]] = {}


def register_backend(name: str):
    """Class decorator: make ``get_backend(name, **options)`` construct ``cls(**options)``."""

    def wrap(cls: type["FlowBackend"]) -> type["FlowBackend"]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str, **options: Any) -> "FlowBackend":
    """A flow backend by name; options are the backend's own (preset, ckpt, device, batch_pairs, ...)."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise FlowprepError(f"unknown flow backend {name!r}; available: {', '.join(available_backends())}") from None
    try:
        inspect.signature(cls).bind(**options)
    except TypeError:
        accepted = [p for p in inspect.signature(cls).parameters]
        raise FlowprepError(
            f"flow backend {name!r} takes options {', '.join(accepted)}; got {', '.join(sorted(options))}"
        ) from None
    return cls(**options)


def _rebuild(name: str, options: dict[str, Any]) -> "FlowBackend":
    return get_backend(name, **options)


class FlowBackend:
    """Base of every backend: validates the input, hands [N,H,W] pairs to ``compute``."""

    name = "base"
    device = "cpu"
    options: dict[str, Any]  # the constructor's arguments, enough to build the same backend again

    def __call__(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        prev, next = check_pairs(prev, next)
        if len(prev) == 0:
            return np.zeros((0, 2) + prev.shape[1:], np.float32)
        return self.compute(prev, next)

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the flow: enough to tell two builds' flow apart."""
        return {"name": self.name, "device": self.device, "options": dict(self.options)}

    def __reduce__(self):
        return _rebuild, (self.name, dict(self.options))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"


def check_pairs(prev: np.ndarray, next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both stacks as C-contiguous uint8 [N,H,W] of one shape, or a FlowprepError saying what is wrong."""
    prev, next = np.asarray(prev), np.asarray(next)
    if prev.ndim != 3 or next.shape != prev.shape:
        raise FlowprepError(f"flow needs two uint8 [N,H,W] stacks of one shape, got {prev.shape} and {next.shape}")
    if prev.dtype != np.uint8 or next.dtype != np.uint8:
        raise FlowprepError(f"flow needs uint8 frames, got {prev.dtype} and {next.dtype}")
    return np.ascontiguousarray(prev), np.ascontiguousarray(next)
