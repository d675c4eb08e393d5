"""BYOL: an online network predicts a slowly moving target network's view of the image.

Grill, Strub, Altché, Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar, Piot,
Kavukcuoglu, Munos, Valko. "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning", NeurIPS 2020.

There are no negatives: the online network (backbone, projector, predictor) regresses the
L2-normalised projection that the target network (backbone, projector) gives to the other
view. Nothing in the loss forbids the constant solution; two pieces of the architecture
keep it from being reached. The target is an exponential moving average of the online
weights and gets no gradient, so the online network chases a target that only slowly
follows it; and the predictor, which can track the best predictor of the target quickly,
makes the collapsed point unstable (paper, section 3.2 and Table 5; Tian et al. 2021).
Without the predictor (``use_predictor = false``) it collapses at once. The paper also
reports collapse with momentum 0 (``base_momentum = 0``: the target is the online network
under a stop-gradient); SimSiam (Chen & He 2021) later showed that this configuration can
learn, and on the built-in shapes in short CPU runs it does not collapse.

Details of this implementation:

* The loss is the paper's symmetrised sum ``L(p1, z2') + L(p2, z1')`` (range 0-8).
* The target momentum follows the cosine schedule from ``base_momentum`` to 1 (paper:
  0.996, solo-learn's CIFAR recipe 0.99). What matters is the target's horizon,
  about ``1 / (1 - m)`` steps, against the length of the run: 0.996 is 250 steps of the
  paper's 300,000, 0.99 is 100 of a 600-step CPU run, a sixth of it, and the target then
  barely moves. The CPU preset starts at 0.9 (a 10-step horizon): 2 minutes on shapes
  end at 41.5 % kNN accuracy against 28.8 % at 0.99 and 38.2 % at 0.8 (random init
  22.0 %; ``bench/learning.py``, 2026-12-01, one seed each; three seeds of 0.9 end at
  29.7 ± 5.7 %; 43.9 ± 3.2 % with bfloat16 AMP on a CPU that has it, 834 steps
  instead of 478-620 in the same 120 s, 2026-12-02). The GPU preset's 3,000 steps keep
  0.99. Not better in the same budget
  (one seed each, 2026-12-02): SGD with momentum at lr 0.06 and weight decay 5e-4, as
  lightly's CIFAR-10 recipe (22.6 % with the predictor at the same rate, 28.3 % at 10x),
  hidden widths 512 (29.2 %), batch 256 (25.3 %, 139 steps). ``base_momentum = 0``
  means *no EMA*: the momentum stays 0 for the whole run (the target is a copy of the
  online network at every step, as in the paper's collapsing ablation), rather than the
  schedule of 0 rising to 1.
* The predictor learns 10 times faster than the rest (``predictor_lr_mult``). The
  predictor must stay close to the best predictor of the target for the collapsed point to
  be unstable (Tian, Chen, Ganguli 2021, "Understanding Self-Supervised Learning Dynamics
  without Contrastive Pairs", who study its relative learning rate; SimSiam keeps its
  predictor's rate fixed for the same reason). With the paper's equal rates the CPU
  preset ends 2 minutes on shapes at 24.1 % kNN accuracy (22.0 % at random init); with 10x
  at 28.9 % (``bench/learning.py``, 2026-11-28).
* ``output_std`` is the SimSiam paper's collapse indicator (Chen & He 2021, Fig. 2): the
  mean over dimensions of the per-dimension std, over the batch, of the L2-normalised
  online projection of view 1. About ``1/sqrt(d)`` when healthy, 0 when collapsed.

On several processes the loss is per image (the mean over processes is the whole-batch
mean) and needs nothing gathered; ``output_std`` is measured on the gathered projections
of the global batch. BatchNorm is synchronised by default: the official JAX networks
(deepmind-research ``byol/utils/networks.py``) use cross-replica BatchNorm,
``hk.BatchNorm(..., cross_replica_axis='i')``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engine.augment import ViewAugment
from engine.config import Config, MethodConfig, param
from engine.distributed import gather
from engine.heads import mlp_head, predictor_lr_mult_param
from engine.losses import byol_loss
from engine.methods._base import StepOutput
from engine.methods._joint import MomentumMethod
from engine.monitor import output_std
from engine.registry import register_method


@dataclass
class BYOLConfig(MethodConfig):
    base_momentum: float = param(
        0.99,
        "Target EMA momentum at the start; it rises to 1 on a cosine schedule (0.996 in "
        "the paper's long runs; the target follows about 1 / (1 - m) steps behind, so "
        "short runs want less: 0.9 in the CPU preset). 0 turns the EMA off for the whole "
        "run.",
        min=0.0,
        max=1.0,
        collapse="0 makes the target a copy of the online network (no EMA): the BYOL paper "
        "reports collapse (Table 5a). SimSiam later showed that the predictor and the "
        "stop-gradient can suffice, and short runs on the built-in data do not collapse.",
    )
    use_predictor: bool = param(
        True,
        "Put the predictor MLP on the online branch (as in the paper).",
        collapse="Without the predictor BYOL collapses (paper, Table 5b): the online "
        "network can then match the target by mapping everything to one point.",
    )
    predictor_lr_mult: float = predictor_lr_mult_param()
    proj_hidden_dim: int = param(
        1024, "Hidden width of the projector MLP (4096 in the paper).", min=16, max=16384
    )
    proj_dim: int = param(256, "Output dimension of the projector (256 in the paper).",
                          min=2, max=8192)
    pred_hidden_dim: int = param(
        1024, "Hidden width of the predictor MLP (4096 in the paper).", min=16, max=16384
    )


@register_method(
    "byol",
    config=BYOLConfig,
    family="non-contrastive",
    description="Predict a slowly moving (EMA) copy of the network's view of the other "
    "augmentation; no negatives.",
    paper="Grill et al. 2020, Bootstrap Your Own Latent: A New Approach to Self-Supervised "
    "Learning",
    preset={"method.base_momentum": 0.9},
    gpu_preset={
        "method.base_momentum": 0.99,
        "optim.batch_size": 256,
        "optim.max_steps": 3000,
        "augment.crop_min_scale": 0.2,
        "method.proj_hidden_dim": 4096,
        "method.pred_hidden_dim": 4096,
    },
    collapse_advice=(
        "BYOL relies on the predictor learning faster than the target moves: keep the "
        "base momentum at 0.9 or above (0.99-0.996 for long runs), the predictor's "
        "learning-rate multiplier "
        "(method.predictor_lr_mult) near 10, and do not lower the predictor's width."
    ),
    sync_batchnorm=True,
)
class BYOL(MomentumMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: BYOLConfig = cfg.method  # type: ignore[assignment]
        self.base_momentum = m.base_momentum
        self.predictor_lr_mult = m.predictor_lr_mult
        self.projector = mlp_head(feature_dim, m.proj_hidden_dim, m.proj_dim)
        self.predictor: nn.Module = (
            mlp_head(m.proj_dim, m.pred_hidden_dim, m.proj_dim)
            if m.use_predictor
            else nn.Identity()
        )
        self.target_backbone = self.add_target(self.backbone)
        self.target_projector = self.add_target(self.projector)

    def lr_multipliers(self) -> dict[str, float]:
        return {"predictor.": self.predictor_lr_mult}

    def momentum_at(self, step: int, total_steps: int) -> float:
        """Cosine schedule from ``base_momentum`` to 1; exactly 0 throughout when base is 0."""
        if self.base_momentum == 0.0:
            return 0.0
        return super().momentum_at(step, total_steps)

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        n = images.shape[0]
        views = self.two_views(images, augment, generator)
        z = self.projector(self.backbone(views))
        p = self.predictor(z)
        with torch.no_grad():
            zt = self.target_projector(self.target_backbone(views))
        loss = byol_loss(p[:n], zt[n:]) + byol_loss(p[n:], zt[:n])
        # a statistic of the batch: measured on the global one
        return StepOutput(loss, {"output_std": output_std(gather(z[:n].detach()))})
