"""Barlow Twins: make the cross-correlation of two views' embeddings the identity matrix.

Zbontar, Jing, Misra, LeCun, Deny. "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", ICML 2021.

Each view's projections are standardised along the batch and their ``d x d``
cross-correlation ``C`` is pushed towards the identity: the diagonal term
``sum_i (1 - C_ii)^2`` makes every dimension agree between the views (invariance), the
off-diagonal term ``lambd * sum_{i!=j} C_ij^2`` decorrelates the dimensions (redundancy
reduction). Collapse is prevented by the loss itself, without negatives, momentum encoder
or stop-gradient: a constant embedding has zero variance, so after standardisation it
cannot reach ``C_ii = 1``; and the off-diagonal term stops all dimensions from copying
one informative direction (dimensional collapse).

On several processes ``C`` is the cross-correlation of the global batch: both views'
projections are gathered with gradients (:func:`engine.distributed.gather`) and every
process computes the same whole-batch loss, as the paper's code sums ``C`` over the
GPUs. BatchNorm is synchronised by default (the official ``main.py`` converts the model
with ``nn.SyncBatchNorm.convert_sync_batchnorm``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.augment import ViewAugment
from engine.config import Config, MethodConfig, param
from engine.distributed import gather
from engine.heads import mlp_head
from engine.losses import barlow_twins_loss
from engine.methods._base import StepOutput
from engine.methods._joint import TwoViewMethod
from engine.registry import register_method


@dataclass
class BarlowTwinsConfig(MethodConfig):
    lambd: float = param(
        5e-3,
        "Weight λ of the redundancy-reduction (off-diagonal) term. The paper uses 5e-3 with "
        "8192-d projections, i.e. about 1/d up to a constant; it is not rescaled here with "
        "the projection size, and the paper found results flat over a wide range around "
        "it. 0 keeps only the invariance term (much worse in the paper's ablation): the "
        "dimensions are then free to become copies of one another.",
        min=0.0,
        max=1.0,
    )
    proj_hidden_dim: int = param(
        2048,
        "Hidden width of the 3-layer projector (8192 in the paper on ImageNet, 2048 in "
        "common CIFAR settings). Wider projectors help Barlow Twins.",
        min=16,
        max=16384,
    )
    proj_dim: int = param(
        2048,
        "Output dimension d of the projector, the size of the cross-correlation matrix "
        "(8192 in the paper).",
        min=2,
        max=16384,
    )


@register_method(
    "barlow_twins",
    config=BarlowTwinsConfig,
    family="non-contrastive",
    description="Make the two views' cross-correlation matrix the identity (redundancy "
    "reduction).",
    paper="Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy "
    "Reduction",
    preset={"method.proj_hidden_dim": 512, "method.proj_dim": 512},
    gpu_preset={
        "method.proj_hidden_dim": 2048,
        "method.proj_dim": 2048,
        "optim.batch_size": 256,
        "optim.max_steps": 3000,
        "augment.crop_min_scale": 0.2,
    },
    collapse_advice=(
        "Lower lambda (off-diagonal weight) if the on-diagonal term never falls; a wider "
        "projector helps."
    ),
    sync_batchnorm=True,
)
class BarlowTwins(TwoViewMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: BarlowTwinsConfig = cfg.method  # type: ignore[assignment]
        self.lambd = m.lambd
        # Linear-BN-ReLU, Linear-BN-ReLU, Linear (the paper's projector); the loss
        # standardises the output along the batch (the paper's affine-free BatchNorm).
        self.projector = mlp_head(feature_dim, m.proj_hidden_dim, m.proj_dim, layers=3)

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        n = images.shape[0]
        views = self.two_views(images, augment, generator)
        z = self.projector(self.backbone(views))
        # the global batch's cross-correlation (each process gets the whole-batch loss)
        loss, on_diag, off_diag = barlow_twins_loss(gather(z[:n]), gather(z[n:]), self.lambd)
        return StepOutput(loss, {"on_diag": on_diag.detach(), "off_diag": off_diag.detach()})
