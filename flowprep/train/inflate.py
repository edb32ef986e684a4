"""Start a 3D front-end from 2D ImageNet weights on disk (nothing is downloaded; the 2D front-ends
``resnet2d`` and ``c3d-resnet`` take a torchvision ``resnet34`` state_dict as it is: pretrained.py):

- ``r3d18`` from a torchvision ``resnet18`` state_dict (module names match key by key);
- ``i3d`` from a torchvision ``googlenet`` state_dict (Inception-v1, the network I3D inflates:
  conv1/conv2/conv3 -> the stem, inception3a..5b -> mixed_3b..5c, branch1..4 -> branch0..3).

Each 2D kernel ``[O, I, k, k]`` becomes ``[O, I, t, k, k]``: repeated over the t frames of the 3D
kernel and divided by t, so a clip of one repeated image gives the 2D network's activations
(inside the clip, away from the zero padding in time). The stem sees 1 channel (gray) or 2 (flow)
instead of RGB: its kernel is averaged over RGB and that average is used for every input channel.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import FlowprepError
from .pretrained import load_resnet34

# what each front-end inflates from: (torchvision model, a key every such state_dict holds)
SOURCES = {"r3d18": ("resnet18", "conv1.weight"), "i3d": ("googlenet", "inception3a.branch1.conv.weight"),
           "resnet2d": ("resnet34", "conv1.weight"), "c3d-resnet": ("resnet34", "conv1.weight")}
_WEIGHTS = {"resnet18": "IMAGENET1K_V1", "googlenet": "IMAGENET1K_V1", "resnet34": "IMAGENET1K_V1"}
# 2D front-ends take their ImageNet weights as they are (pretrained.load_resnet34), nothing to inflate
DIRECT = ("resnet2d", "c3d-resnet")


def how_to_make(frontend: str) -> str:
    name = SOURCES[frontend][0]
    return ("save one on a connected machine with: python -c \"import torch, torchvision; "
            f"torch.save(torchvision.models.{name}(weights='{_WEIGHTS[name]}').state_dict(), '{name}.pth')\"")


def load_2d(path: str | Path, frontend: str = "r3d18") -> dict[str, torch.Tensor]:
    """The 2D state_dict that ``frontend`` inflates from, read with weights_only=True; a missing or
    wrong file is a FlowprepError naming the file and the torchvision model it should hold."""
    name, key = SOURCES[frontend]
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlowprepError(f"pretrained weights not found: expected a torchvision {name} state_dict at {path} "
                            f"(for --frontend {frontend}); {how_to_make(frontend)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or not a torch file
        raise FlowprepError(f"{path} is not a loadable state_dict ({exc}); {how_to_make(frontend)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or key not in state:
        raise FlowprepError(f"{path} does not hold a {name} state_dict (no {key}); {how_to_make(frontend)}")
    return state


_STEM = {"stem.0": "conv1", "stem.2": "conv2", "stem.3": "conv3"}
_BLOCKS = {"mixed_3b": "inception3a", "mixed_3c": "inception3b", "mixed_4b": "inception4a", "mixed_4c": "inception4b",
           "mixed_4d": "inception4c", "mixed_4e": "inception4d", "mixed_4f": "inception4e", "mixed_5b": "inception5a",
           "mixed_5c": "inception5b"}


def googlenet_key(key: str) -> str:
    """The torchvision googlenet key of an I3D key: ``blocks.mixed_3b.branch1.1.0.weight`` ->
    ``inception3a.branch2.1.conv.weight`` (a Unit3D's 0 is the conv, 1 its batch norm)."""
    unit, index, param = key.rsplit(".", 2)
    part = {"0": "conv", "1": "bn"}[index]
    if unit in _STEM:
        return f"{_STEM[unit]}.{part}.{param}"
    m = re.fullmatch(r"blocks\.(mixed_\w+)\.branch(\d)((?:\.\d)?)", unit)
    if not m:
        raise KeyError(key)
    return f"{_BLOCKS[m.group(1)]}.branch{int(m.group(2)) + 1}{m.group(3)}.{part}.{param}"


def inflate(model: nn.Module, frontend: str, weights: str | Path | dict[str, torch.Tensor]) -> int:
    """Copy 2D weights (a file, or a state_dict from load_2d) into a front-end ``model`` (any input
    channels, width 1); returns the number of tensors loaded. Every 3D tensor must find its 2D
    counterpart: a partial match is an error."""
    source = weights if isinstance(weights, dict) else load_2d(weights, frontend)
    path = "the pretrained weights" if isinstance(weights, dict) else weights
    if frontend in DIRECT:
        return load_resnet34(model, frontend, source, path)
    name = SOURCES[frontend][0]
    to_2d = googlenet_key if frontend == "i3d" else (lambda k: k)
    inflated: dict[str, torch.Tensor] = {}
    for key, dest in model.state_dict().items():
        key_2d = to_2d(key)
        if key_2d not in source:
            raise FlowprepError(f"{path} has no {key_2d}: not a torchvision {name} state_dict")
        weight = source[key_2d].float() if source[key_2d].is_floating_point() else source[key_2d]
        if dest.dim() == 5 and weight.dim() == 4:  # a convolution: [O, I, k, k] -> [O, I, t, k, k]
            if weight.shape[1] != dest.shape[1]:  # the stem: RGB -> gray or flow channels
                weight = weight.mean(dim=1, keepdim=True).expand(-1, dest.shape[1], -1, -1)
            t = dest.shape[2]
            weight = weight.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
        if weight.shape != dest.shape:
            raise FlowprepError(f"{path}: {key_2d} is {tuple(source[key_2d].shape)}, the 3D {frontend} needs "
                                f"{tuple(dest.shape)} (pretrained weights need width 1.0)")
        inflated[key] = weight.to(dest.dtype)
    model.load_state_dict(inflated)
    return len(inflated)


def inflate_resnet18(model: nn.Module, weights: str | Path | dict[str, torch.Tensor]) -> int:
    return inflate(model, "r3d18", weights)


def inflate_googlenet(model: nn.Module, weights: str | Path | dict[str, torch.Tensor]) -> int:
    return inflate(model, "i3d", weights)
