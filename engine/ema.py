"""Shared pieces of the momentum-encoder methods (MoCo, BYOL, DINO), written once.

- :func:`ema_update`: ``target <- m * target + (1 - m) * online`` (MoCo, He et al. 2020).
- :func:`cosine_momentum`: BYOL's schedule ``m = 1 - (1 - m0) (cos(pi k / K) + 1) / 2``,
  rising from ``m0`` to 1 over training (Grill et al. 2020, section 3.2).
- :class:`MemoryQueue`: MoCo's FIFO queue of negative keys.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def make_target(online: nn.Module) -> nn.Module:
    """A frozen copy of ``online`` to be updated only by :func:`ema_update`."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for every parameter;
    buffers (BatchNorm statistics) are copied from the online network."""
    tp: list[torch.Tensor] = list(target.parameters())
    op = [p.detach() for p in online.parameters()]
    if len(tp) != len(op):
        raise ValueError(f"target has {len(tp)} parameters, online {len(op)}")
    if tp:
        # t + (1 - m) (o - t) = m t + (1 - m) o, every tensor in one call
        torch._foreach_lerp_(tp, op, 1.0 - momentum)
    tb, ob = list(target.buffers()), list(online.buffers())
    if len(tb) != len(ob):
        raise ValueError(f"target has {len(tb)} buffers, online {len(ob)}")
    if tb:
        torch._foreach_copy_(tb, ob)


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's target momentum at ``step``: ``base`` at the start, 1 at ``total_steps``."""
    progress = min(1.0, step / max(1, total_steps))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class MemoryQueue(nn.Module):
    """A FIFO queue of ``size`` L2-normalised keys of dimension ``dim`` (MoCo).

    The oldest keys are overwritten first; the pointer wraps around. Kept as buffers so
    checkpoints save and restore it.
    """

    keys: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("keys", nn.functional.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue a batch of keys, dequeuing the oldest."""
        keys = keys.detach().to(self.keys.dtype)
        n = keys.shape[0]
        if n >= self.size:
            self.keys.copy_(keys[-self.size :])
            self.ptr.zero_()
            return
        idx = (int(self.ptr) + torch.arange(n, device=keys.device)) % self.size
        self.keys[idx] = keys
        self.ptr.fill_((int(self.ptr) + n) % self.size)
