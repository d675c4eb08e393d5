"""What the reconstruction methods share: geometric views, and a decoder sized to the backbone.

Colorization, inpainting and the denoising autoencoder all decode the backbone's spatial
feature map (:func:`engine.backbones.feature_map`) with the shared
:class:`~engine.heads.ConvDecoder`, so they train the same encoder as every other method
and kNN and the collapse scores compare them on equal terms.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.augment import ViewAugment
from engine.backbones import feature_map
from engine.config import AugmentConfig, Config
from engine.heads import ConvDecoder
from engine.methods._base import SSLMethod


def geometric_only(cfg: AugmentConfig) -> AugmentConfig:
    """The augmentation settings with every colour operation off (crop and flip kept).

    The target of a reconstruction method is the image itself: colour jitter or random
    grayscale would only change what has to be reconstructed (for colorization, grey
    targets teach grey outputs). The papers train on plain crops and flips.
    """
    return dataclasses.replace(cfg, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)


@torch.no_grad()
def probe_feature_map(backbone: nn.Module, resolution: int) -> tuple[int, int]:
    """Channels and side of the backbone's feature map for ``resolution`` px input."""
    was_training = backbone.training
    backbone.eval()  # no batch statistics touched
    try:
        p = next(backbone.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        fmap = feature_map(backbone, torch.zeros(1, 3, resolution, resolution, device=device))
    finally:
        backbone.train(was_training)
    return int(fmap.shape[1]), int(fmap.shape[-1])


def upsampling_stages(map_size: int, out_size: int) -> int:
    """Number of 2x upsampling stages from the feature map to ``out_size``:
    ``log2(out_size / map_size)``, rounded (the small CNN and ResNet-18 have stride 8, a
    ViT its patch size); any remaining factor is closed by one bilinear resize."""
    return max(0, round(math.log2(out_size / map_size)))


class ReconstructionMethod(SSLMethod):
    """Base of the reconstruction methods: ``decode(x)`` = ConvDecoder(feature map of x).

    ``out_stride`` > 1 makes the decoder predict at ``resolution / out_stride`` (Zhang et
    al. predict colour at a quarter of the input resolution). ``head``, if given, maps the
    decoder's ``out_channels`` further (colorization: a 1x1 classifier over many bins,
    cheaper than a 3x3 conv straight to them).
    """

    def __init__(self, cfg: Config, backbone: nn.Module, feature_dim: int, out_channels: int,
                 out_stride: int = 1, head: nn.Module | None = None) -> None:
        super().__init__(cfg, backbone, feature_dim)
        self.resolution = cfg.data.resolution
        self.out_size = max(1, self.resolution // out_stride)
        channels, map_size = probe_feature_map(backbone, self.resolution)
        self.decoder = ConvDecoder(channels, out_channels,
                                   stages=upsampling_stages(map_size, self.out_size))
        self.head = head if head is not None else nn.Identity()
        self.views = ViewAugment(geometric_only(cfg.augment), self.resolution)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(B, 3, R, R)`` -> decoder output ``(B, out, S, S)``."""
        y = self.head(self.decoder(feature_map(self.backbone, x)))
        if y.shape[-1] != self.out_size or y.shape[-2] != self.out_size:
            y = F.interpolate(y, size=(self.out_size, self.out_size), mode="bilinear",
                              align_corners=False)
        return y
