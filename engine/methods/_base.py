"""What every method shares: a backbone, the step contract and the monitor hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from engine.augment import ViewAugment
    from engine.config import Config


@dataclass
class StepOutput:
    """The loss to minimise and named metrics (scalars) to stream and plot."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)


class SSLMethod(nn.Module):
    """Base class: ``backbone`` is the encoder evaluated by kNN and the collapse scores.

    Subclasses build their heads in ``__init__`` and implement :meth:`training_step`.
    """

    def __init__(self, cfg: Config, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.feature_dim = feature_dim

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        """One step's loss from a uint8 batch ``(B, 3, R, R)`` already on the device."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of normalised images: what kNN and exports use."""
        return self.backbone(x)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The embedding the loss acts on, used for the collapse scores."""
        return features

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        """Hook after the optimiser step (EMA updates); returns extra metrics."""
        return {}
