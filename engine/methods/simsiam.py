"""SimSiam: a siamese network where one branch predicts the other, with a stop-gradient.

Chen, He. "Exploring Simple Siamese Representation Learning", CVPR 2021.

Both views go through the same encoder (backbone + projector); a predictor MLP maps one
view's projection ``p`` onto the other view's projection ``z``, and the loss is the
negative cosine ``D(p1, z2) / 2 + D(p2, z1) / 2``. There are no negatives and no momentum
encoder. What stops the constant solution is the *stop-gradient* on ``z`` together with
the predictor: the paper reads the method as an alternating (EM-like) optimisation in
which ``z`` plays the role of a fixed target for each step, and shows that without the
stop-gradient (Fig. 2) or without the predictor (Table 1) the output std drops to zero
and accuracy to chance. Both are exposed here as switches.

Details of this implementation:

* Projector: three layers with BN, the last BN without affine parameters; predictor: a
  two-layer bottleneck MLP (hidden = 1/4 of the output), as in the paper (2048 / 512 on
  ImageNet; smaller here for CPU runs).
* The paper trains with SGD (lr 0.05 * batch / 256) and keeps the predictor's learning
  rate fixed instead of decaying it; the CPU preset uses the workbench's AdamW schedule,
  which learns on the built-in data (see the preset), with the predictor's rate 20 times
  the schedule's (``predictor_lr_mult``), which serves the same purpose: on *shapes* in
  120 s of CPU at the earlier lr 5e-4, kNN accuracy 28.7 % at x1, 33.9 % at x5, 34.4 %
  at x10, 38.7 % at x20 and 36.1 % at x50 (random init 22.0 %; 2026-11-28). The preset's
  lr is now 1e-3 (measured beside 5e-4 and 2e-3 in the preset's comment). Three seeds
  of the preset end at 41.2 ± 7.9 % in float32 (743 steps) and at 52.4 ± 0.6 % with
  bfloat16 AMP on a CPU that has it (1,122 steps in the same 120 s; 2026-12-02): in a
  fixed time this method gains most from more steps.
* ``output_std``: the mean over dimensions of the batch std of the L2-normalised
  projection ``z / |z|`` of view 1 (paper, Fig. 2): about ``1/sqrt(d)`` when healthy,
  0 when collapsed.

On several processes the loss is per image (the mean over processes is the whole-batch
mean) and needs nothing gathered; ``output_std`` is measured on the gathered projections
of the global batch. BatchNorm is synchronised by default: the official
``main_simsiam.py`` converts the model with ``nn.SyncBatchNorm.convert_sync_batchnorm``
("Apply SyncBN") whenever it trains on several GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engine.augment import ViewAugment
from engine.config import Config, MethodConfig, param
from engine.distributed import gather
from engine.heads import mlp_head, predictor_lr_mult_param
from engine.losses import simsiam_loss
from engine.methods._base import StepOutput
from engine.methods._joint import TwoViewMethod
from engine.monitor import output_std
from engine.registry import register_method


@dataclass
class SimSiamConfig(MethodConfig):
    stop_gradient: bool = param(
        True,
        "Stop the gradient through the target projection z (as in the paper).",
        collapse="Without the stop-gradient SimSiam collapses at once (paper, Fig. 2): the "
        "loss is minimised by mapping every image to the same vector.",
    )
    use_predictor: bool = param(
        True,
        "Put the predictor MLP on top of the projector (as in the paper).",
        collapse="Without the predictor SimSiam collapses (paper, Table 1a).",
    )
    predictor_lr_mult: float = predictor_lr_mult_param(20.0)
    proj_hidden_dim: int = param(
        512, "Hidden width of the 3-layer projector (2048 in the paper).", min=16, max=16384
    )
    proj_dim: int = param(512, "Output dimension of the projector (2048 in the paper).",
                          min=2, max=16384)
    pred_hidden_dim: int = param(
        128, "Bottleneck width of the predictor (512 in the paper, 1/4 of the output).",
        min=4, max=16384
    )


@register_method(
    "simsiam",
    config=SimSiamConfig,
    family="non-contrastive",
    description="One view predicts the other through a predictor, with a stop-gradient; no "
    "negatives, no momentum encoder.",
    paper="Chen & He 2021, Exploring Simple Siamese Representation Learning",
    # AdamW on shapes, 120 s of CPU (bench/learning.py, 2026-12-01, one seed each): kNN
    # 41.3 % at lr 5e-4, 53.2 % at 1e-3, 44.9 % at 2e-3, where the projections also lose
    # most of their rank (6.6 / 512); random init 22.0 %. Batch 128 stays: three seeds
    # each on 2026-12-02 end at 33.1 ± 2.7 % with batch 64 (1,225 steps) and 27.6 ± 1.7 %
    # with 256 (238 steps); with the predictor at 10x instead of 20x, 35.8 ± 10.5 %.
    preset={"optim.lr": 1e-3},
    gpu_preset={
        "optim.lr": 5e-4,  # as before the CPU preset's change; not measured on a GPU
        "optim.batch_size": 256,
        "optim.max_steps": 3000,
        "augment.crop_min_scale": 0.2,
        "method.proj_hidden_dim": 2048,
        "method.proj_dim": 2048,
        "method.pred_hidden_dim": 512,
    },
    collapse_advice=(
        "SimSiam is sensitive to the learning rate (the paper keeps the predictor's "
        "fixed) and to weight decay; lower optim.lr first, and keep the predictor "
        "learning faster than the encoder (method.predictor_lr_mult, 20 by default)."
    ),
    sync_batchnorm=True,
)
class SimSiam(TwoViewMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: SimSiamConfig = cfg.method  # type: ignore[assignment]
        self.stop_gradient = m.stop_gradient
        self.predictor_lr_mult = m.predictor_lr_mult
        self.projector = mlp_head(feature_dim, m.proj_hidden_dim, m.proj_dim, layers=3,
                                  last_bn=True)
        self.predictor: nn.Module = (
            mlp_head(m.proj_dim, m.pred_hidden_dim, m.proj_dim) if m.use_predictor
            else nn.Identity()
        )

    def lr_multipliers(self) -> dict[str, float]:
        return {"predictor.": self.predictor_lr_mult}

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        n = images.shape[0]
        views = self.two_views(images, augment, generator)
        z = self.projector(self.backbone(views))
        p = self.predictor(z)
        z1, z2, p1, p2 = z[:n], z[n:], p[:n], p[n:]
        sg = self.stop_gradient
        loss = 0.5 * simsiam_loss(p1, z2, sg) + 0.5 * simsiam_loss(p2, z1, sg)
        # a statistic of the batch: measured on the global one
        return StepOutput(loss, {"output_std": output_std(gather(z1.detach()))})
