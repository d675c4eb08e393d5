"""SimCLR: contrast two augmented views of each image against the rest of the batch.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020.

On several processes every anchor is contrasted with the negatives of all of them: the
projections are gathered with gradients (:func:`engine.distributed.gather`) and each
process takes its own images' views as anchors against the whole batch
(:func:`engine.losses.nt_xent_shard`), so the mean over processes is the whole-batch
NT-Xent. BatchNorm is synchronised by default: the paper's "global BN" (section 2.2)
aggregates its statistics over all devices, which stops a positive pair recognising
itself by its local batch statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.augment import ViewAugment
from engine.config import Config, MethodConfig, param
from engine.distributed import gather, is_distributed, rank
from engine.heads import mlp_head
from engine.losses import nt_xent, nt_xent_shard
from engine.methods._base import StepOutput
from engine.methods._joint import TwoViewMethod
from engine.registry import register_method


@dataclass
class SimCLRConfig(MethodConfig):
    temperature: float = param(
        0.2,
        "Softmax temperature of the NT-Xent loss (0.5 in SimCLR's CIFAR runs, 0.1-0.5 "
        "works).",
        min=0.001,
        max=100.0,
        collapse="An extreme temperature collapses the embedding: at 10 or more the loss "
        "barely separates images and the effective rank falls (dimensional collapse); at "
        "0.005 or less every image is pushed into a narrow region and the per-dim std falls.",
    )
    proj_hidden_dim: int = param(512, "Hidden width of the projection MLP.", min=16, max=8192)
    proj_dim: int = param(128, "Output dimension of the projection MLP.", min=2, max=8192)


@register_method(
    "simclr",
    config=SimCLRConfig,
    family="contrastive",
    description="Pull two views of an image together, push other images away (NT-Xent).",
    paper="Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations",
    gpu_preset={"optim.batch_size": 256, "optim.max_steps": 3000, "augment.crop_min_scale": 0.2},
    collapse_advice=(
        "SimCLR needs negatives: a very small batch or a temperature far from 0.1-0.5 "
        "weakens them."
    ),
    sync_batchnorm=True,
)
class SimCLR(TwoViewMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: SimCLRConfig = cfg.method  # type: ignore[assignment]
        self.temperature = m.temperature
        self.projector = mlp_head(feature_dim, m.proj_hidden_dim, m.proj_dim)

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        n = images.shape[0]
        views = self.two_views(images, augment, generator)
        z = self.projector(self.backbone(views))
        z1, z2 = z[:n], z[n:]
        if is_distributed():
            loss = nt_xent_shard(gather(z1), gather(z2), rank() * n, n, self.temperature)
        else:
            loss = nt_xent(z1, z2, self.temperature)
        return StepOutput(loss)
