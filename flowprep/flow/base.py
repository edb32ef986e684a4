"""The flow-backend contract and its registry.

    backend(prev: uint8[N,H,W], next: uint8[N,H,W]) -> float32[N,2,H,W]

Channel 0 is dx, channel 1 is dy, in pixels, forward flow: the content at p in ``prev`` is at
p + flow(p) in ``next``, i.e. next(p + flow(p)) ~= prev(p).

Each backend declares where a build runs it (``runs_in``: "crop", inside the CPU worker that made
the clip's crops, or "actor", in its own long-lived actor fed batches of pairs from many clips),
on which devices (``devices``), and how it builds itself from a ``FlowConfig`` (``options_from``).
The builder asks the registry (``backend_class``, ``make``) and never branches on a backend's name.

Names: a backend is registered under one name ("dis"); a family takes a model after a colon
("ptlflow:raft_small" builds the "ptlflow" class with ``model="raft_small"``).

A backend is rebuilt from its name and options, never copied: pickling one (a Ray task argument,
an actor's constructor argument) sends ``(name, options)`` and the receiving process constructs
it again, loading any model there.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterator, Sequence

import numpy as np

from ..config import FlowConfig
from ..errors import FlowprepError

RUNS_IN = ("crop", "actor")
_REGISTRY: dict[str, type["FlowBackend"]] = {}


def register_backend(name: str):
    """Class decorator: make ``get_backend(name, **options)`` construct ``cls(**options)``."""

    def wrap(cls: type["FlowBackend"]) -> type["FlowBackend"]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_backends() -> list[str]:
    return sorted(f"{n}:MODEL" if cls.family else n for n, cls in _REGISTRY.items())


def _split(name: str) -> tuple[type["FlowBackend"], str | None]:
    """The class registered for ``name`` and the model after its colon (None for a plain backend)."""
    base, colon, model = str(name).partition(":")
    cls = _REGISTRY.get(base)
    if cls is None:
        raise FlowprepError(f"unknown flow backend {name!r}; available: {', '.join(available_backends())}")
    if cls.family and not model:
        raise FlowprepError(f"flow backend {base!r} needs a model: --flow {base}:MODEL (e.g. {cls.example})")
    if not cls.family and colon:
        raise FlowprepError(f"flow backend {base!r} takes no model; use --flow {base}")
    return cls, (model if cls.family else None)


def backend_class(name: str) -> type["FlowBackend"]:
    """The class a backend name builds: what it declares (``runs_in``, ``devices``) without building it."""
    return _split(name)[0]


def make(cfg: FlowConfig) -> "FlowBackend":
    """The backend a build's flow settings describe, built from them (models load here)."""
    cls, model = _split(cfg.backend)
    options = cls.options_from(cfg)
    return get_backend(cfg.backend, **options) if model is None else cls(model=model, **options)


def check(cfg: FlowConfig) -> None:
    """Fail now, with the fix, on what would fail once the backend is built (missing weights): run
    before a cluster starts."""
    cls, model = _split(cfg.backend)
    cls.check(cfg, model)


def get_backend(name: str, **options: Any) -> "FlowBackend":
    """A flow backend by name; options are the backend's own (preset, ckpt, device, batch_pairs, ...)."""
    cls, model = _split(name)
    if model is not None:
        options = {"model": model, **options}
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
    runs_in = "crop"  # "crop": in the CPU worker, clip by clip; "actor": its own actor, batches of many clips
    devices: tuple[str, ...] = ("cpu",)  # where it can run: "cpu", "cuda"
    family = False  # True: the name takes a model after a colon, passed as ``model=``
    example = ""  # a model name for the error that asks for one (families only)

    @classmethod
    def options_from(cls, cfg: FlowConfig) -> dict[str, Any]:
        """The constructor's options a build's flow settings give (the model of a family aside)."""
        return {}

    @classmethod
    def check(cls, cfg: FlowConfig, model: str | None) -> None:
        """Raise a FlowprepError now for what would fail at construction (weights missing); cheap."""

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


def pair_batches(pairs: Sequence[int], batch_pairs: int) -> Iterator[list[tuple[int, int, int]]]:
    """Cut the flow pairs of several clips, in order, into batches of at most ``batch_pairs`` pairs,
    regardless of clip boundaries: each batch is a list of (clip index, first pair, end pair).

    A clip longer than a batch is split across batches; several short clips share one. So what one
    backend call holds, and the memory its forward pass needs, is bounded by ``batch_pairs``,
    whatever the clips' lengths.
    """
    if int(batch_pairs) < 1:
        raise FlowprepError(f"batch_pairs must be at least 1, got {batch_pairs}")
    batch: list[tuple[int, int, int]] = []
    room = int(batch_pairs)
    for clip, n in enumerate(pairs):
        start = 0
        while start < n:
            take = min(room, n - start)
            batch.append((clip, start, start + take))
            start += take
            room -= take
            if room == 0:
                yield batch
                batch, room = [], int(batch_pairs)
    if batch:
        yield batch
