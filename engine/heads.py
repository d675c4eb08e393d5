"""Projection and prediction heads, written once and reused by every method."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.config import param


def predictor_lr_mult_param(default: float = 10.0) -> Any:
    """The config field for a predictor's learning-rate multiplier (BYOL, SimSiam).

    A predictor that learns faster than the encoder keeps tracking its moving target, which
    short runs need (Tian, Chen, Ganguli 2021, "Understanding self-supervised learning
    dynamics without contrastive pairs"). Each method's docstring gives its measured effect.
    """
    return param(
        default,
        "The predictor's learning rate as a multiple of the schedule's (1 in BYOL; SimSiam "
        "keeps it from decaying instead). A faster predictor keeps up with its moving "
        "target, which short runs need (Tian et al. 2021).",
        min=0.1,
        max=100.0,
        label="Predictor LR ×",
    )


def mlp_head(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    *,
    layers: int = 2,
    batch_norm: bool = True,
    last_bn: bool = False,
) -> nn.Sequential:
    """An MLP projector: (Linear-BN-ReLU) x (layers-1), then Linear (+ optional BN).

    SimCLR uses two layers; SimSiam/Barlow Twins use three with a final BN.
    """
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods.append(nn.Linear(d, hidden_dim, bias=not batch_norm))
        if batch_norm:
            mods.append(nn.BatchNorm1d(hidden_dim))
        mods.append(nn.ReLU(inplace=True))
        d = hidden_dim
    mods.append(nn.Linear(d, out_dim, bias=not last_bn))
    if last_bn:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)


class ConvDecoder(nn.Module):
    """Upsample a backbone feature map ``(B, C, R/2^k, R/2^k)`` back to ``(B, out, R, R)``.

    ``k`` stages of (2x nearest upsampling, 3x3 conv, BN, ReLU), halving the channels
    each time, then a 3x3 conv to ``out_channels``. Nearest upsampling plus a conv
    avoids the checkerboard artefacts of transposed convolutions (Odena et al. 2016).
    Shared by colorization, inpainting and the denoising autoencoder.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stages: int = 3,
                 min_channels: int = 16) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c = in_channels
        for _ in range(stages):
            c_out = max(min_channels, c // 2)
            mods += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c, c_out, 3, 1, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c = c_out
        mods.append(nn.Conv2d(c, out_channels, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, section 3.1 and appendix).

    An MLP (Linear-GELU) x (layers-1) -> Linear to ``bottleneck_dim`` (256 in the paper),
    L2 normalisation, then a weight-normalised linear layer without bias to ``out_dim``
    prototypes (65536 in the paper). With ``norm_last_layer`` (the paper's default) the
    weight norm's gain is fixed to 1, so every prototype is a unit vector and each output
    is a cosine similarity in [-1, 1]; otherwise the per-prototype gain is learned.
    ``batch_norm`` adds BatchNorm after each hidden Linear (the paper code's
    ``use_bn_in_head``, off by default there). Linear layers start from a truncated
    normal with std 0.02, as in the paper's code.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        *,
        layers: int = 3,
        norm_last_layer: bool = True,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            mods.append(nn.Linear(d, hidden_dim))
            if batch_norm:
                mods.append(nn.BatchNorm1d(hidden_dim))
            mods.append(nn.GELU())
            d = hidden_dim
        mods.append(nn.Linear(d, bottleneck_dim))
        self.mlp = nn.Sequential(*mods)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # weight_norm's direction v; the prototypes are its rows normalised.
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.kaiming_uniform_(self.prototypes, a=5**0.5)  # nn.Linear's default init
        self.gain = None if norm_last_layer else nn.Parameter(torch.ones(out_dim, 1))

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised bottleneck embedding, before the prototype layer."""
        return nn.functional.normalize(self.mlp(x), dim=-1)

    def logits(self, b: torch.Tensor) -> torch.Tensor:
        """Scores of bottleneck embeddings ``b`` against the ``out_dim`` prototypes."""
        w = nn.functional.normalize(self.prototypes, dim=1)
        if self.gain is not None:
            w = w * self.gain
        return nn.functional.linear(b, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.bottleneck(x))
