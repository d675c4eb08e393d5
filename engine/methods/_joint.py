"""Building blocks of the joint-embedding methods, written once.

- :class:`TwoViewMethod`: two augmented views of every image through the backbone and a
  projector (SimCLR, MoCo, BYOL, SimSiam, Barlow Twins, VICReg, triplet).
- :class:`MomentumMethod`: a two-view method with target networks that follow online
  networks by an exponential moving average (MoCo, BYOL, DINO). A method declares its
  (online, target) pairs and its momentum schedule; the base makes the frozen targets,
  applies the EMA after every optimiser step and streams the momentum, after
  solo-learn's ``BaseMomentumMethod``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from engine.ema import cosine_momentum, ema_update, make_target
from engine.methods._base import InputView, SSLMethod

if TYPE_CHECKING:
    from engine.augment import ViewAugment
    from engine.config import Config


class TwoViewMethod(SSLMethod):
    """Backbone + ``projector`` over two augmented views per image."""

    projector: nn.Module

    @staticmethod
    def two_views(images: torch.Tensor, augment: ViewAugment,
                  generator: torch.Generator) -> torch.Tensor:
        """Two independent augmentations of the batch, stacked: rows ``i`` and ``n + i``
        are the views of image ``i`` (one forward pass for both)."""
        return torch.cat([augment(images, generator), augment(images, generator)])

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.projector(features)

    def training_inputs(self, samples: Any, generator: torch.Generator) -> list[InputView]:
        """The two augmented views :meth:`two_views` stacks for the step."""
        from engine.augment import to_uint8

        augment = self.train_augment()
        assert augment is not None
        n = samples.shape[0]
        views = to_uint8(self.two_views(samples, augment, generator))
        return [InputView("view 1", views[:n], caption="a random augmentation"),
                InputView("view 2", views[n:], caption="another, drawn independently")]


class MomentumMethod(TwoViewMethod):
    """A two-view method with EMA targets.

    Subclasses make each target with ``self.target = self.add_target(self.online)`` in
    ``__init__`` and set
    ``base_momentum``; the default schedule is BYOL's cosine rise from ``base_momentum``
    to 1 (Grill et al. 2020, section 3.2); MoCo overrides :meth:`momentum_at` with a
    constant.
    """

    base_momentum: float = 0.99

    def __init__(self, cfg: Config, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        # a plain list, so the modules stay registered (and saved) under their own names
        self._momentum_pairs: list[tuple[nn.Module, nn.Module]] = []

    def add_target(self, online: nn.Module) -> nn.Module:
        """A frozen copy of ``online`` that follows it by EMA after every step."""
        target = make_target(online)
        self._momentum_pairs.append((online, target))
        return target

    def momentum_at(self, step: int, total_steps: int) -> float:
        """The target momentum after ``step``: cosine from ``base_momentum`` to 1."""
        return cosine_momentum(self.base_momentum, step, total_steps)

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        m = self.momentum_at(step, total_steps)
        for online, target in self._momentum_pairs:
            ema_update(target, online, m)
        return {"target_momentum": float(m)}
