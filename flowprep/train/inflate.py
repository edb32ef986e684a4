"""Start the 3D ResNet-18 from 2D ImageNet weights: a torchvision ``resnet18`` state_dict on disk.

Each 2D kernel ``[O, I, k, k]`` becomes ``[O, I, t, k, k]``: repeated over the t frames of the 3D
kernel and divided by t, so a clip of one repeated image gives the 2D network's activations
(inside the clip, away from the zero padding in time). The stem sees 1 channel (gray) or 2 (flow)
instead of RGB: its kernel is averaged over RGB and that average is used for every input channel.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import FlowprepError
from .models import ResNet3D18

HOW_TO_MAKE = ("save one on a connected machine with: python -c \"import torch, torchvision; "
               "torch.save(torchvision.models.resnet18(weights='IMAGENET1K_V1').state_dict(), 'resnet18.pth')\"")


def load_resnet18_2d(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FlowprepError(f"pretrained weights not found: expected a torchvision resnet18 state_dict at {path}; "
                            f"{HOW_TO_MAKE}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or not a torch file
        raise FlowprepError(f"{path} is not a loadable state_dict ({exc}); {HOW_TO_MAKE}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise FlowprepError(f"{path} does not hold a resnet18 state_dict (no conv1.weight); {HOW_TO_MAKE}")
    return state


def inflate_resnet18(model: ResNet3D18, weights: str | Path | dict[str, torch.Tensor]) -> int:
    """Copy 2D weights (a file, or a state_dict loaded by load_resnet18_2d) into ``model`` (any input
    channels, width 1); returns the number of tensors loaded. Every 3D tensor must find its 2D
    counterpart: a partial match is an error."""
    source = weights if isinstance(weights, dict) else load_resnet18_2d(weights)
    path = "the pretrained weights" if isinstance(weights, dict) else weights
    target = model.state_dict()
    inflated: dict[str, torch.Tensor] = {}
    for key, dest in target.items():
        if key not in source:
            raise FlowprepError(f"{path} has no {key}: not a torchvision resnet18 state_dict")
        weight = source[key].float() if source[key].is_floating_point() else source[key]
        if dest.dim() == 5:  # a convolution: [O, I, k, k] -> [O, I, t, k, k]
            if weight.shape[1] != dest.shape[1]:  # the stem: RGB -> gray or flow channels
                weight = weight.mean(dim=1, keepdim=True).expand(-1, dest.shape[1], -1, -1)
            t = dest.shape[2]
            weight = weight.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
        if weight.shape != dest.shape:
            raise FlowprepError(f"{path}: {key} is {tuple(source[key].shape)}, the 3D ResNet-18 needs "
                                f"{tuple(dest.shape)} (pretrained weights need width 1.0)")
        inflated[key] = weight.to(dest.dtype)
    model.load_state_dict(inflated)
    return len(inflated)
