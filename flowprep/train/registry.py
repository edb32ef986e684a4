"""The model vocabulary in one place: which front-ends, back-ends and fusions exist, and who builds them.

The names are declared here, without torch, so the command line and ``TrainConfig`` validate a choice
without loading a network library. The torch modules register their builders against these names
(``@FRONTEND.register("r3d18")`` in frontends3d.py, ``@BACKEND.register("tcn")`` in backends.py,
``FUSION.register(...)`` in models.py and fusion.py); ``models.build_model`` looks them up. A name can
only be registered once it is declared here, and tests/train/test_models.py checks that every declared
name has a builder, so the two lists cannot drift apart.

Adding a model: declare its name below, write the module, register it, import it from models.py.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from ..errors import FlowprepError

# The seed paper's front-ends (resnet2d, c3d-resnet, i3d) and flowprep's r3d18.
FRONTENDS = ("resnet2d", "c3d-resnet", "i3d", "r3d18")
# The paper's back-ends (conv1d: two 1D temporal convolutions + FC; bilstm) and flowprep's tcn.
BACKENDS = ("conv1d", "bilstm", "tcn")
DEFAULT_LAYERS = {"conv1d": 2, "bilstm": 2, "tcn": 4}
# Input channels of each stream. heatmap: Gaussian maps of dlib's 20 mouth landmarks, one channel each,
# drawn on the device from the stored landmarks after crop and flip (flowprep.transforms.keypoint_heatmaps).
STREAM_CHANNELS = {"gray": 1, "flow": 2, "heatmap": 20}
# Fusions that combine two streams' feature maps at a front-end stage, then 3D conv + 3D pooling.
MAP_FUSIONS = ("sum", "max", "concat", "conv", "bilinear")
# features: per-frame features concatenated into one back-end (models.LipReader); scores: a back-end per
# stream, logits averaged (fusion.FusedTwoStream); the map fusions (fusion.FusedTwoStream).
FUSIONS = ("features", "scores") + MAP_FUSIONS


class Registry:
    """Builders of one kind (front-end, back-end, fusion), keyed by the names declared above."""

    def __init__(self, kind: str, names: tuple[str, ...]):
        self.kind, self.names = kind, tuple(names)
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if name not in self.names:
            raise ValueError(f"{self.kind} {name!r} is not declared in flowprep/train/registry.py")

        def record(builder: Callable[..., Any]) -> Callable[..., Any]:
            self._builders[name] = builder
            return builder

        return record

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if name not in self._builders:
            raise FlowprepError(f"{self.kind} {name!r}: use one of {', '.join(self.names)}")
        return self._builders[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def missing(self) -> list[str]:
        """Declared names without a builder (empty once the torch modules are imported)."""
        return [n for n in self.names if n not in self._builders]


FRONTEND = Registry("front-end", FRONTENDS)  # (in_channels, width) -> module [B, C, T, H, W] -> [B, T, F]
BACKEND = Registry("back-end", BACKENDS)  # (in_features, classes, hidden, layers, dropout) -> module
FUSION = Registry("fusion", FUSIONS)  # (TrainConfig, num_classes) -> the whole network
