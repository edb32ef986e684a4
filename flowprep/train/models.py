"""The network a training run describes: front-ends per stream, a temporal back-end, and how the streams
meet. Read in this order: frontends3d.py / frontends2d.py (clip -> per-frame features), backends.py
(per-frame features -> logits), fusion.py (two streams fused inside the network), then this module.

``build_model(cfg, num_classes)`` looks every name up in registry.py; this module imports the modules
that register the builders, so importing it makes every declared name buildable.
"""

from __future__ import annotations

import torch
from torch import nn

from . import frontends2d, frontends3d  # noqa: F401  (register the front-ends)
from . import fusion  # noqa: F401  (registers the scores and map fusions)
from .backends import Classifier
from .registry import BACKEND, DEFAULT_LAYERS, FRONTEND, FUSION, STREAM_CHANNELS

__all__ = ["LipReader", "build_model"]


class LipReader(Classifier):
    """One front-end per stream and one back-end on their concatenated per-frame features (the
    ``features`` fusion); a single stream is the case with one front-end. Score fusion and the map
    fusions are fusion.FusedTwoStream."""

    def __init__(self, streams: tuple[str, ...], frontend: str, backend: str, num_classes: int, width: float = 1.0,
                 hidden: int = 512, layers: int | None = None, dropout: float = 0.2):
        super().__init__()
        self.streams = tuple(streams)
        self.frontends = nn.ModuleDict({s: FRONTEND[frontend](STREAM_CHANNELS[s], width) for s in self.streams})
        features = sum(f.out_features for f in self.frontends.values())
        self.backends = nn.ModuleDict({"fused": BACKEND[backend](features, num_classes, hidden,
                                                                 layers or DEFAULT_LAYERS[backend], dropout)})

    @classmethod
    def from_config(cls, cfg, num_classes: int) -> "LipReader":
        return cls(cfg.streams, cfg.frontend, cfg.backend, num_classes, cfg.width, cfg.hidden, cfg.layers,
                   cfg.dropout)

    def forward(self, inputs: dict[str, torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        """``inputs[stream]``: [B, C, T, H, W] with the same T for every stream; returns logits [B, K]."""
        return self.backends["fused"](torch.cat([self.frontends[s](inputs[s]) for s in self.streams], dim=-1),
                                      lengths)


FUSION.register("features")(LipReader.from_config)


def fusion_of(cfg) -> str:
    """The fusion that builds a TrainConfig's network: one stream is always ``features``; lateral
    connections with ``features`` mean score fusion with a joint head over both streams."""
    if len(cfg.streams) == 1:
        return "features"
    if cfg.lateral and cfg.fusion == "features":
        return "scores"
    return cfg.fusion


def build_model(cfg, num_classes: int) -> Classifier:
    """The network a TrainConfig describes (random init; see inflate.py and pretrained.py for pretrained
    starts)."""
    return FUSION[fusion_of(cfg)](cfg, num_classes)
