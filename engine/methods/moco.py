"""MoCo v2: contrast each query against its momentum-encoded key and a queue of old keys.

He, Fan, Wu, Xie, Girshick. "Momentum Contrast for Unsupervised Visual Representation
Learning", CVPR 2020; Chen, Fan, Girshick, He. "Improved Baselines with Momentum
Contrastive Learning", arXiv 2020 (v2: MLP projector, stronger augmentation, T = 0.2).

Why it works: like SimCLR, the InfoNCE loss pulls two views of an image together and
pushes them away from other images, so collapsing everything onto one point costs a high
loss. MoCo decouples the number of negatives from the batch size: keys from past batches
wait in a FIFO queue (thousands of them), and they stay consistent with the current
queries because the key encoder is a slowly moving exponential average of the query
encoder (momentum 0.999 in the paper) instead of the query encoder itself.

Details of this implementation:

* The loss is symmetrised over the two views, ``(L(q1, k2) + L(q2, k1)) / 2``, as in
  MoCo v3 (Chen, Xie, He 2021) and solo-learn's ``mocov2plus``; both views' keys are then
  enqueued (view 1 first), after the loss was computed, so a query never sees its own
  positive among the negatives.
* The key encoder runs in train mode on the same batch as the queries. The paper's
  "shuffling BN" across GPUs (section 3.3: per-GPU BatchNorm, with the keys' sub-batches
  shuffled across GPUs so that a query and its key do not share batch statistics) is not
  reproduced; on small single-device runs this does not prevent learning. For the same
  reason BatchNorm is *not* synchronised across processes by default (the paper's BN is
  per GPU): each process normalises its own shard, as one GPU of the paper does.
* On several processes the keys of every process are enqueued (all of view 1, then all
  of view 2, gathered without gradient: keys get none), so every process holds the same
  queue, the one a single process on the whole batch would hold, as the paper's
  ``_dequeue_and_enqueue`` does with its ``concat_all_gather``.
* The projector is MoCo v2's two-layer MLP with BatchNorm on its hidden layer, as in
  MoCo v3 (without it, kNN after ~125 CPU steps was 0.20 instead of 0.25).
* The momentum is fixed (0.99 by default: with a few hundred CPU steps, 0.999 would leave
  the key encoder almost at its random initialisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.augment import ViewAugment
from engine.config import Config, MethodConfig, param
from engine.distributed import gather
from engine.ema import MemoryQueue
from engine.heads import mlp_head
from engine.losses import info_nce
from engine.methods._base import StepOutput
from engine.methods._joint import MomentumMethod
from engine.registry import register_method


@dataclass
class MoCoConfig(MethodConfig):
    temperature: float = param(
        0.2,
        "Softmax temperature of the InfoNCE loss (0.2 in MoCo v2, 0.07 in MoCo v1).",
        min=0.001,
        max=100.0,
        collapse="Extreme temperatures (≤ 0.01 or ≥ 5) make the loss blind to structure: "
        "tiny ones only see the single hardest negative, huge ones weigh all negatives "
        "equally, and the embedding collapses onto a few directions.",
    )
    momentum: float = param(
        0.99,
        "Momentum of the key encoder: key = m * key + (1 - m) * query after every step. "
        "0.999 in the paper (hundreds of thousands of steps); 0.99 suits short runs.",
        min=0.0,
        max=1.0,
    )
    queue_size: int = param(
        4096,
        "Number of negative keys kept in the FIFO queue (65536 in the paper on ImageNet).",
        min=16,
        max=65536,
    )
    proj_hidden_dim: int = param(
        512, "Hidden width of the projection MLP (2048 in MoCo v2).", min=16, max=8192
    )
    proj_dim: int = param(128, "Output dimension of the projection MLP (128 in MoCo v2).",
                          min=2, max=8192)


@register_method(
    "moco",
    config=MoCoConfig,
    family="contrastive",
    description="Contrast each view with its momentum-encoded twin and a queue of old keys "
    "(MoCo v2).",
    paper="He et al. 2020, Momentum Contrast for Unsupervised Visual Representation "
    "Learning; Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning",
    gpu_preset={
        "optim.batch_size": 256,
        "optim.max_steps": 3000,
        "augment.crop_min_scale": 0.2,
        "method.queue_size": 16384,
        "method.proj_hidden_dim": 2048,
    },
    collapse_advice=(
        "Check the temperature (0.1-0.2) and that the queue is large compared with the "
        "batch; a key momentum near 1 with few steps leaves the keys random."
    ),
)
class MoCo(MomentumMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: MoCoConfig = cfg.method  # type: ignore[assignment]
        self.temperature = m.temperature
        self.momentum = m.momentum
        self.projector = mlp_head(feature_dim, m.proj_hidden_dim, m.proj_dim)
        self.key_backbone = self.add_target(self.backbone)
        self.key_projector = self.add_target(self.projector)
        self.queue = MemoryQueue(m.queue_size, m.proj_dim)

    def momentum_at(self, step: int, total_steps: int) -> float:
        """MoCo keeps the key encoder's momentum constant (0.999 in the paper)."""
        return self.momentum

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        n = images.shape[0]
        views = self.two_views(images, augment, generator)
        q = self.projector(self.backbone(views))
        q1, q2 = q[:n], q[n:]
        with torch.no_grad():
            k = F.normalize(self.key_projector(self.key_backbone(views)).float(), dim=1)
        k1, k2 = k[:n], k[n:]
        negatives = self.queue.keys.clone()
        loss = 0.5 * (
            info_nce(q1, k2, negatives, self.temperature)
            + info_nce(q2, k1, negatives, self.temperature)
        )
        with torch.no_grad():
            qn = F.normalize(q.detach().float(), dim=1)
            pos_sim = 0.5 * ((qn[:n] * k2).sum(1).mean() + (qn[n:] * k1).sum(1).mean())
            neg_sim = (qn @ negatives.t()).mean()
        self.queue.push(gather(k1))
        self.queue.push(gather(k2))
        return StepOutput(
            loss, {"positive_similarity": pos_sim, "negative_similarity": neg_sim}
        )
