"""Encoders shared by every method, so all methods are compared on equal terms."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


class SmallCNN(nn.Module):
    """A four-stage conv net (0.3 M parameters at width 16) that trains fast on CPU.

    Each stage is conv-BN-ReLU twice with a stride-2 first conv; global average pooling
    gives a ``8 * width`` feature vector.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(c_in, c, 3, stride, 1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, 1, 1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def resnet18_small(resolution: int) -> nn.Module:
    """torchvision's ResNet-18 with a stem for small images.

    Below 96 px the 7x7/2 stem and max-pool throw away most of the image, so it uses a
    3x3/1 stem without max-pool, as in SimCLR's CIFAR experiments (Chen et al. 2020).
    The classifier is replaced by identity; features are 512-d.
    """
    net = torchvision.models.resnet18(weights=None)
    if resolution < 96:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = 512  # type: ignore[assignment]
    return net


def feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The backbone's last spatial feature map, before pooling: ``(B, C, R/8, R/8)``.

    Reconstruction methods decode it back to an image (with
    :class:`~engine.heads.ConvDecoder`), so they train the same encoder every other
    method trains, and kNN and collapse scores compare them on equal terms.
    """
    if isinstance(backbone, SmallCNN):
        return backbone.features(x)
    if isinstance(backbone, torchvision.models.ResNet):
        x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
        return backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(x))))
    fmap = getattr(backbone, "feature_map", None)
    if fmap is None:
        raise ValueError(f"{type(backbone).__name__} has no spatial feature map")
    return fmap(x)


def resolve_backbone_name(name: str, device: torch.device) -> str:
    """'auto' means the small CNN on CPU and ResNet-18 on an accelerator."""
    if name != "auto":
        return name
    return "small_cnn" if device.type == "cpu" else "resnet18"


def build_backbone(name: str, resolution: int, width: int) -> tuple[nn.Module, int]:
    """The encoder and its feature dimension."""
    if name == "small_cnn":
        net: nn.Module = SmallCNN(width)
    elif name == "resnet18":
        net = resnet18_small(resolution)
    else:
        raise ValueError(f"unknown backbone {name!r}")
    return net, int(net.out_dim)
