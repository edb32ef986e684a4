"""Two-stream fusion inside the network: convolutional fusion at a front-end stage (Feichtenhofer et
al., CVPR 2016), late score fusion, and bidirectional lateral connections with a joint head
(two-stream sign-language recognition).

The front-ends of ``frontends3d.py`` (``ResNet3D18``, ``I3D``) and ``frontends2d.py`` are run *stage by stage* without changing
them: :func:`frontend_stages` names, for each stage, the submodules its ``forward`` runs in order
(the 3D ResNet: stem, layer1..layer4; I3D: stem, mixed_3*, pool_3 + mixed_4*, pool_4 + mixed_5*).
The wrapper keeps each front-end as a registered submodule, so its parameter names, its
``state_dict`` and 2D->3D inflation (``inflate.inflate_resnet18(model.frontend_a, ...)``) are the
same as in a ``LipReader``. Running the stages then averaging over the image gives exactly the
front-end's own output (tested).

Time is never strided here either (the 3D pooling after fusion has temporal stride 1), so every
model returns per-clip logits from per-frame back-ends that honour ``lengths``, like ``LipReader``.

Shapes: a stream's input is ``[B, C, T, H, W]``: C = 1 (gray), 2 (flow) or the number of heatmap
channels (1 summed map, 20 mouth points, 68 landmarks, ...); see :data:`STREAM_CHANNELS`.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from . import frontends2d  # noqa: F401  (registers the 2D front-ends build_fused_model may name)
from .backends import Classifier
from .frontends3d import I3D, ResNet3D18, pool_space
from .registry import BACKEND, BACKENDS, DEFAULT_LAYERS, FRONTEND, FUSION, MAP_FUSIONS, STREAM_CHANNELS

# what FusedTwoStream does: a map fusion at a stage, or a back-end per stream with their scores averaged
TWO_STREAM_FUSIONS = MAP_FUSIONS + ("scores",)


# ---- running a front-end stage by stage --------------------------------------------------------
def frontend_stages(frontend: nn.Module) -> list[list[str]]:
    """For each stage of ``frontend``, the dotted names of the submodules its forward runs, in order.

    A front-end of another kind can take part by defining ``stage_names()`` returning such a list,
    provided its ``forward(x)`` equals running those submodules in order and averaging the result
    over H and W (``[B, F, T, H, W] -> [B, T, F]``)."""
    if hasattr(frontend, "stage_names"):
        return [list(s) for s in frontend.stage_names()]
    if isinstance(frontend, ResNet3D18):
        return [["conv1", "bn1", "relu", "maxpool"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]]
    if isinstance(frontend, I3D):
        stages, current = [["stem"]], []
        for name, _ in frontend.blocks.named_children():
            if name.startswith("pool") and current:  # a pooling step opens the next stage
                stages.append(current)
                current = []
            current.append(f"blocks.{name}")
        stages.append(current)
        return stages
    raise TypeError(f"cannot split {type(frontend).__name__} into stages: give it a stage_names() method "
                    "(a list of lists of submodule names that its forward runs in order)")


class StagedFrontend(nn.Module):
    """A front-end plus the knowledge of its stages. ``self.net`` is the wrapped module unchanged."""

    def __init__(self, frontend: nn.Module):
        super().__init__()
        self.net = frontend
        self.stage_names = frontend_stages(frontend)
        self.out_features = frontend.out_features

    def __len__(self) -> int:
        return len(self.stage_names)

    def run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Stages ``start`` to ``stop - 1`` on a feature map (or the input when start is 0)."""
        for names in self.stage_names[start:stop]:
            for name in names:
                x = self.net.get_submodule(name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_space(self.run(x, 0, len(self)))


@torch.no_grad()
def stage_shapes(frontend: StagedFrontend, in_channels: int, size: tuple[int, int]) -> list[tuple[int, int, int]]:
    """(channels, height, width) after each stage for an input of ``size``, by a 2-frame dry run."""
    was_training = frontend.training
    frontend.eval()
    x = torch.zeros(1, in_channels, 2, *size, device=next(frontend.parameters()).device)
    shapes = []
    for i in range(len(frontend)):
        x = frontend.run(x, i, i + 1)
        shapes.append((x.shape[1], x.shape[3], x.shape[4]))
    frontend.train(was_training)
    return shapes


def _in_channels(frontend: nn.Module) -> int:
    for m in frontend.modules():
        if isinstance(m, (nn.Conv3d, nn.Conv2d)):
            return m.in_channels
    raise TypeError(f"{type(frontend).__name__} has no Conv3d")


# ---- resampling one stream's map onto the other's grid ----------------------------------------
class Resample(nn.Module):
    """[B, Cin, T, h, w] -> [B, Cout, T, H, W]: a 1x1x1 convolution at the same resolution, a strided
    (1, 2r-1, 2r-1) convolution to go r times smaller, a transposed (1, r, r) convolution to go r times
    larger; any remaining off-by-one (odd sizes) is resolved by bilinear resizing."""

    def __init__(self, cin: int, cout: int, src_hw: tuple[int, int], dst_hw: tuple[int, int], bias: bool = True):
        super().__init__()
        self.dst_hw = tuple(dst_hw)
        ratio = src_hw[0] / dst_hw[0]
        if ratio >= 1.5:
            r = int(round(ratio))
            self.conv = nn.Conv3d(cin, cout, (1, 2 * r - 1, 2 * r - 1), stride=(1, r, r), padding=(0, r - 1, r - 1),
                                  bias=bias)
        elif ratio <= 1 / 1.5:
            r = int(round(1 / ratio))
            self.conv = nn.ConvTranspose3d(cin, cout, (1, r, r), stride=(1, r, r), bias=bias)
        else:
            self.conv = nn.Conv3d(cin, cout, 1, bias=bias)

    def forward(self, x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x)
        hw = tuple(like.shape[3:]) if like is not None else None
        if hw is not None and tuple(x.shape[3:]) != hw:
            x = F.interpolate(x, size=(x.shape[2], *hw), mode="trilinear", align_corners=False)
        return x


# ---- the fusion operators ----------------------------------------------------------------------
class ConvFusion(nn.Module):
    """Fuse two maps of one shape [B, C, T, H, W] (``sum``, ``max``, ``concat``, ``conv``, ``bilinear``),
    then a 3x3x3 convolution (+ BN + ReLU) back to ``out_channels`` and a 3x3x3 max-pooling over space
    and time (temporal stride 1, spatial stride ``pool_stride``).

    ``conv`` is a 1x1x1 convolution over the concatenation initialised to [I | I]: it starts as
    ``sum`` and learns correspondences between the streams' channels. ``bilinear`` reduces each map to
    ``bilinear_channels`` (r) with a 1x1x1 convolution, then takes the outer product of the two
    r-vectors at every location (r*r channels, divided by r): memory grows with r^2, not C^2."""

    def __init__(self, kind: str, channels: int, out_channels: int | None = None, bilinear_channels: int = 8,
                 pool_stride: int = 1):
        super().__init__()
        if kind not in MAP_FUSIONS:
            raise ValueError(f"fusion {kind!r}: use one of {', '.join(MAP_FUSIONS)}")
        self.kind = kind
        out_channels = out_channels or channels
        fused = channels
        if kind == "concat":
            fused = 2 * channels
        elif kind == "conv":
            self.mix = nn.Conv3d(2 * channels, channels, 1)
            with torch.no_grad():
                eye = torch.eye(channels)[:, :, None, None, None]
                self.mix.weight.copy_(torch.cat([eye, eye], dim=1))
                self.mix.bias.zero_()
        elif kind == "bilinear":
            r = bilinear_channels
            self.reduce_a, self.reduce_b = nn.Conv3d(channels, r, 1), nn.Conv3d(channels, r, 1)
            fused = r * r
        self.fused_channels = fused
        self.post = nn.Sequential(
            nn.Conv3d(fused, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3, stride=(1, pool_stride, pool_stride), padding=1),
        )

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The fused map before the 3D convolution and pooling."""
        if a.shape != b.shape:
            raise ValueError(f"fusion needs maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        if self.kind == "sum":
            return a + b
        if self.kind == "max":
            return torch.maximum(a, b)
        if self.kind == "concat":
            return torch.cat([a, b], dim=1)
        if self.kind == "conv":
            return self.mix(torch.cat([a, b], dim=1))
        ra, rb = self.reduce_a(a), self.reduce_b(b)
        n, r = ra.shape[0], ra.shape[1]
        outer = torch.einsum("bithw,bjthw->bijthw", ra, rb).reshape(n, r * r, *ra.shape[2:])
        return outer / r

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.post(self.combine(a, b))


# ---- the model ---------------------------------------------------------------------------------
BackendFactory = Callable[[int], nn.Module]


def backend_factory(backend: str | BackendFactory, num_classes: int | None = None, hidden: int = 512,
                    layers: int | None = None, dropout: float = 0.2) -> BackendFactory:
    """``in_features -> module(x [B, T, F], lengths) -> logits``: from a name of registry.BACKENDS, or as given."""
    if callable(backend):
        return backend
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: use one of {', '.join(BACKENDS)} or a callable")
    if num_classes is None:
        raise ValueError("num_classes is needed to build a named back-end")
    layers = layers or DEFAULT_LAYERS[backend]
    return lambda features: BACKEND[backend](features, num_classes, hidden, layers, dropout)


class FusedTwoStream(Classifier):
    """Two front-ends (any stage-splittable ones: ``ResNet3D18``, ``I3D``, of any input channels and
    widths), fused one of two ways:

    * ``fusion`` in sum | max | concat | conv | bilinear: both streams run to the end of stage
      ``stage`` (negative counts from the end; -1 = after the last conv stage, the paper's best), are
      fused there (stream b is first mapped onto stream a's channels and grid by :class:`Resample` if
      they differ), then a 3D convolution + 3D pooling, then stream a's remaining stages on the fused
      map, the average over the image and one back-end. Stream b's later stages are not built into
      the graph (their parameters stay in the module but get no gradient).
    * ``fusion="scores"``: each stream to the end and its own back-end; the predictions are averaged
      (``average="logits"`` or ``"log_probs"``).

    ``lateral=True`` adds bidirectional lateral connections after each stage in ``lateral_stages``
    (default: every stage before the fusion stage, or before the last one for ``scores``): each
    stream adds a transformed copy of the other's map (1x1x1 conv, or a strided / transposed conv when
    the grids differ), computed from the maps before either addition. With ``scores`` it also adds a
    joint head over both streams' concatenated per-frame features, and averages the three heads.

    ``forward(inputs, lengths)`` takes ``{stream: [B, C, T, H, W]}`` (names from ``streams``) and
    returns ``[B, K]``; :meth:`heads` gives every head's logits, :meth:`loss` the sum of the heads'
    cross-entropies (what the sign-language paper trains; for one head it is plain cross-entropy).
    """

    def __init__(self, frontend_a: nn.Module, frontend_b: nn.Module, backend: str | BackendFactory = "bilstm",
                 num_classes: int | None = None, streams: Sequence[str] = ("gray", "flow"), fusion: str = "conv",
                 stage: int = -1, lateral: bool = False, lateral_stages: Sequence[int] | None = None,
                 joint_head: bool | None = None, average: str = "logits", bilinear_channels: int = 8,
                 pool_stride: int = 1, input_sizes: Sequence[tuple[int, int]] = ((64, 64), (64, 64)),
                 hidden: int = 512, layers: int | None = None, dropout: float = 0.2):
        super().__init__()
        if fusion not in TWO_STREAM_FUSIONS:
            raise ValueError(f"fusion {fusion!r}: use one of {', '.join(TWO_STREAM_FUSIONS)}")
        if average not in ("logits", "log_probs"):
            raise ValueError(f"average {average!r}: use logits or log_probs")
        if len(streams) != 2:
            raise ValueError(f"two streams needed, got {list(streams)}")
        self.streams, self.fusion, self.average = tuple(streams), fusion, average
        self.frontend_a, self.frontend_b = StagedFrontend(frontend_a), StagedFrontend(frontend_b)
        n = len(self.frontend_a)
        if len(self.frontend_b) != n:
            raise ValueError(f"the front-ends have {n} and {len(self.frontend_b)} stages: fuse front-ends of one kind")
        self.stage = stage % n if fusion != "scores" else n - 1
        if not -n <= stage < n:
            raise ValueError(f"stage {stage}: the front-ends have stages 0..{n - 1}")
        shapes_a = stage_shapes(self.frontend_a, _in_channels(frontend_a), tuple(input_sizes[0]))
        shapes_b = stage_shapes(self.frontend_b, _in_channels(frontend_b), tuple(input_sizes[-1]))
        make_backend = backend_factory(backend, num_classes, hidden, layers, dropout)

        last_lateral = self.stage - 1 if fusion != "scores" else n - 2
        if lateral_stages is None:
            lateral_stages = range(0, last_lateral + 1) if lateral else ()
        self.lateral_stages = sorted({s % n for s in lateral_stages})
        if any(s > last_lateral for s in self.lateral_stages):
            raise ValueError(f"lateral stages {self.lateral_stages}: with fusion {fusion!r} at stage {self.stage} "
                             f"they must be at most {last_lateral}")
        self.a_from_b = nn.ModuleDict()
        self.b_from_a = nn.ModuleDict()
        for s in self.lateral_stages:
            (ca, ha, wa), (cb, hb, wb) = shapes_a[s], shapes_b[s]
            self.a_from_b[str(s)] = Resample(cb, ca, (hb, wb), (ha, wa))
            self.b_from_a[str(s)] = Resample(ca, cb, (ha, wa), (hb, wb))

        if fusion == "scores":
            self.joint_head = bool(lateral if joint_head is None else joint_head)
            heads = {"a": make_backend(self.frontend_a.out_features), "b": make_backend(self.frontend_b.out_features)}
            if self.joint_head:
                heads["joint"] = make_backend(self.frontend_a.out_features + self.frontend_b.out_features)
            self.backends = nn.ModuleDict(heads)
        else:
            self.joint_head = False
            (ca, ha, wa), (cb, hb, wb) = shapes_a[self.stage], shapes_b[self.stage]
            # stream b onto stream a's channels and grid, where they differ (e.g. a narrower keypoint stream)
            self.align_b = Resample(cb, ca, (hb, wb), (ha, wa)) if (ca, ha, wa) != (cb, hb, wb) else None
            self.fuse = ConvFusion(fusion, ca, ca, bilinear_channels, pool_stride)
            self.backends = nn.ModuleDict({"fused": make_backend(self.frontend_a.out_features)})

    @property
    def frontends(self) -> dict[str, nn.Module]:
        """{stream: front-end}, as ``LipReader.frontends`` (the trainer inflates 2D weights into these)."""
        return {self.streams[0]: self.frontend_a.net, self.streams[1]: self.frontend_b.net}

    def _lateral(self, s: int, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if s not in self.lateral_stages:
            return a, b
        key = str(s)
        return a + self.a_from_b[key](b, like=a), b + self.b_from_a[key](a, like=b)

    def heads(self, inputs: dict[str, torch.Tensor], lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each head's logits [B, K]: {"fused"} or {"a", "b"[, "joint"]}."""
        a, b = inputs[self.streams[0]], inputs[self.streams[1]]
        if a.shape[2] != b.shape[2]:
            raise ValueError(f"the streams have {a.shape[2]} and {b.shape[2]} frames: give both the same T")
        until = self.stage + 1
        for s in range(until):
            a, b = self.frontend_a.run(a, s, s + 1), self.frontend_b.run(b, s, s + 1)
            if s < until - 1 or self.fusion == "scores":
                a, b = self._lateral(s, a, b)
        if self.fusion == "scores":
            fa, fb = pool_space(a), pool_space(b)
            out = {"a": self.backends["a"](fa, lengths), "b": self.backends["b"](fb, lengths)}
            if self.joint_head:
                out["joint"] = self.backends["joint"](torch.cat([fa, fb], dim=-1), lengths)
            return out
        if self.align_b is not None:
            b = self.align_b(b, like=a)
        x = self.frontend_a.run(self.fuse(a, b), until, len(self.frontend_a))
        return {"fused": self.backends["fused"](pool_space(x), lengths)}

    def combine(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's prediction from its heads: the mean of their logits or of their log-probabilities."""
        values = list(heads.values())
        if len(values) == 1:
            return values[0]
        if self.average == "log_probs":
            values = [F.log_softmax(v.float(), dim=-1) for v in values]
        return torch.stack(values).mean(0)

    def forward(self, inputs: dict[str, torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        return self.combine(self.heads(inputs, lengths))

    def loss(self, inputs: dict[str, torch.Tensor], lengths: torch.Tensor, labels: torch.Tensor,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of every head's loss, the combined prediction [B, K])."""
        heads = self.heads(inputs, lengths)
        total = sum(loss_fn(v.float(), labels) for v in heads.values())
        return total, self.combine(heads)


class SingleStream(Classifier):
    """One front-end and one back-end, for any stream name and channel count (e.g. a keypoint-heatmap
    stream, which ``LipReader`` does not know): ``forward({stream: x}, lengths) -> [B, K]``."""

    def __init__(self, frontend: nn.Module, backend: str | BackendFactory = "bilstm", num_classes: int | None = None,
                 stream: str = "heatmap", hidden: int = 512, layers: int | None = None, dropout: float = 0.2):
        super().__init__()
        self.streams = (stream,)
        self.frontend = frontend
        self.backend = backend_factory(backend, num_classes, hidden, layers, dropout)(frontend.out_features)

    @property
    def frontends(self) -> dict[str, nn.Module]:
        return {self.streams[0]: self.frontend}

    def forward(self, inputs: dict[str, torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        return self.backend(self.frontend(inputs[self.streams[0]]), lengths)


def stream_channels(stream: str, heatmap_channels: int | None = None) -> int:
    if stream == "heatmap" and heatmap_channels:
        return heatmap_channels
    if stream not in STREAM_CHANNELS:
        raise ValueError(f"stream {stream!r}: use one of {', '.join(STREAM_CHANNELS)}")
    return STREAM_CHANNELS[stream]


def build_fused_model(streams: Sequence[str], frontend: str, backend: str, num_classes: int, fusion: str = "conv",
                      stage: int = -1, lateral: bool = False, width: float = 1.0, hidden: int = 512,
                      layers: int | None = None, dropout: float = 0.2, heatmap_channels: int = 1,
                      input_sizes: Sequence[tuple[int, int]] | None = None, **options) -> nn.Module:
    """The model for ``flowprep train --streams ... --fusion ... --fusion-stage ... [--lateral]``:
    one stream -> :class:`SingleStream`; two -> :class:`FusedTwoStream` (``options`` go to it:
    lateral_stages, joint_head, average, bilinear_channels, pool_stride)."""
    streams = tuple(streams)
    make = FRONTEND[frontend]
    frontends = [make(stream_channels(s, heatmap_channels), width) for s in streams]
    if len(streams) == 1:
        return SingleStream(frontends[0], backend, num_classes, streams[0], hidden, layers, dropout)
    return FusedTwoStream(frontends[0], frontends[1], backend, num_classes, streams, fusion, stage, lateral,
                          input_sizes=input_sizes or ((64, 64), (64, 64)), hidden=hidden, layers=layers,
                          dropout=dropout, **options)


def _from_config(fusion: str, cfg, num_classes: int) -> nn.Module:
    """The two-stream network of a TrainConfig (models.build_model, through the registry)."""
    return build_fused_model(cfg.streams, cfg.frontend, cfg.backend, num_classes, fusion=fusion,
                             stage=cfg.fusion_stage, lateral=cfg.lateral, width=cfg.width, hidden=cfg.hidden,
                             layers=cfg.layers, dropout=cfg.dropout, heatmap_channels=STREAM_CHANNELS["heatmap"],
                             input_sizes=((cfg.crop, cfg.crop),) * 2)


for _name in TWO_STREAM_FUSIONS:
    FUSION.register(_name)(functools.partial(_from_config, _name))
