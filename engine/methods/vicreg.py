"""VICReg: variance, invariance and covariance terms on the two views' embeddings.

Bardes, Ponce, LeCun. "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022.

An expander MLP maps each view's features to embeddings ``z``; the loss pulls the two
views' embeddings together (invariance, MSE) while a hinge on the std of every embedding
dimension over the batch keeps it at least ``gamma`` (variance) and the off-diagonal
covariances are driven to zero (covariance). Collapse is prevented explicitly by the
variance term: mapping every image to the same point has zero std, which the hinge
penalises, and the covariance term stops the dimensions from all carrying the same
information (dimensional collapse). No negatives, momentum encoder or stop-gradient are
needed, and the two branches need not share weights.

On several processes all three terms are those of the global batch: both views'
embeddings are gathered with gradients (:func:`engine.distributed.gather`, the paper's
``FullGatherLayer``) and every process computes the same whole-batch loss. BatchNorm is
synchronised by default (the official ``main_vicreg.py`` converts the model with
``nn.SyncBatchNorm.convert_sync_batchnorm``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.augment import ViewAugment
from engine.config import Config, MethodConfig, param
from engine.distributed import gather
from engine.heads import mlp_head
from engine.losses import vicreg_loss
from engine.methods._base import StepOutput
from engine.methods._joint import TwoViewMethod
from engine.registry import register_method


@dataclass
class VICRegConfig(MethodConfig):
    sim_weight: float = param(
        25.0,
        "Weight λ of the invariance term (MSE between the two views' embeddings). "
        "Paper: 25.",
        min=0.0,
        max=100.0,
    )
    variance_weight: float = param(
        25.0,
        "Weight μ of the variance hinge keeping each dimension's std over the batch at "
        "least γ. Paper: 25 (λ = μ works best).",
        min=0.0,
        max=100.0,
        collapse="With μ = 0 nothing stops all embeddings from converging to one point: "
        "the invariance term alone is minimised by a constant output.",
    )
    cov_weight: float = param(
        1.0,
        "Weight ν of the covariance term decorrelating the embedding dimensions. Paper: 1.",
        min=0.0,
        max=100.0,
    )
    gamma: float = param(
        1.0, "Target std γ of each embedding dimension in the variance hinge. Paper: 1.",
        min=0.01, max=10.0,
    )
    eps: float = param(
        1e-4, "ε added to the variance before the square root (numerical stability). "
        "Paper: 1e-4.", min=1e-8, max=1.0, advanced=True,
    )
    proj_hidden_dim: int = param(
        2048,
        "Hidden width of the 3-layer expander (8192 in the paper on ImageNet; 2048 in "
        "common CIFAR settings).",
        min=16,
        max=16384,
    )
    proj_dim: int = param(
        2048, "Output dimension of the expander, where the loss acts (8192 in the paper).",
        min=2, max=16384,
    )


@register_method(
    "vicreg",
    config=VICRegConfig,
    family="non-contrastive",
    description="Match the two views while keeping every embedding dimension's variance "
    "up and dimensions decorrelated.",
    paper="Bardes, Ponce, LeCun 2022, VICReg: Variance-Invariance-Covariance "
    "Regularization for Self-Supervised Learning",
    preset={"method.proj_hidden_dim": 512, "method.proj_dim": 512},
    gpu_preset={
        "method.proj_hidden_dim": 2048,
        "method.proj_dim": 2048,
        "optim.batch_size": 256,
        "optim.max_steps": 3000,
        "augment.crop_min_scale": 0.2,
    },
    collapse_advice=(
        "Raise the variance weight (25 in the paper) relative to invariance."
    ),
    sync_batchnorm=True,
)
class VICReg(TwoViewMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: VICRegConfig = cfg.method  # type: ignore[assignment]
        self.m = m
        # Linear-BN-ReLU, Linear-BN-ReLU, Linear: the paper's expander.
        self.expander = mlp_head(feature_dim, m.proj_hidden_dim, m.proj_dim, layers=3)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.expander(features)

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        n = images.shape[0]
        m = self.m
        views = self.two_views(images, augment, generator)
        z = self.expander(self.backbone(views))
        # variance and covariance of the global batch (the invariance too, for one code
        # path: the mean of the shards' MSEs is the same number)
        loss, inv, var, cov = vicreg_loss(
            gather(z[:n]), gather(z[n:]), m.sim_weight, m.variance_weight, m.cov_weight,
            m.gamma, m.eps,
        )
        metrics = {"invariance": inv.detach(), "variance": var.detach(),
                   "covariance": cov.detach()}
        return StepOutput(loss, metrics)
