"""Triplet loss: an image's two views must be closer than a view of another image.

Schroff, Kalenichenko, Philbin. "FaceNet: A Unified Embedding for Face Recognition and
Clustering", CVPR 2015 (supervised there: positives share an identity label). Here the
positive is the other augmented view of the same image, as in self-supervised
instance discrimination.

The simplest contrastive idea, kept for teaching: for each anchor (view 1 of an image),
its positive (view 2 of the same image) must be closer, by a margin, than a negative (view
2 of another image of the batch). What stops collapse is the negative term: mapping
everything to one point makes both distances 0 and costs the full ``margin`` on every
triplet, whereas a spread-out embedding can bring the loss to 0.
Compared with InfoNCE (SimCLR, MoCo), each anchor sees one negative instead of hundreds,
and the triplets that already satisfy the margin give no gradient at all
(``active_fraction`` shows how many still do), so it learns more slowly.

Embeddings are L2-normalised projector outputs (FaceNet's unit hypersphere), so squared
distances lie in [0, 4]. The negative is either the view 2 of the previous image in the batch
(``random``: the batch order is random) or the closest view 2 of another image
(``hard``: hardest in batch). FaceNet warns that always picking the hardest negatives
"can lead to bad local minima early on in training, specifically it can result in a
collapsed model (i.e. f(x) = 0)" and uses semi-hard ones instead; here too ``hard``
collapses from a random initialisation, so it is marked as a collapse switch.

On several processes "the batch" is the global one: the view-2 embeddings are gathered
with gradients (:func:`engine.distributed.gather`), so a random negative may be an image
of another process and a hard negative is the closest of all of them, exactly as one
process on the whole batch would choose. BatchNorm stays per process
(``run.sync_batchnorm = "on"`` synchronises it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.augment import ViewAugment
from engine.config import Config, MethodConfig, param
from engine.distributed import gather, rank
from engine.heads import mlp_head
from engine.losses import triplet_margin
from engine.methods._base import StepOutput
from engine.methods._joint import TwoViewMethod
from engine.registry import register_method


@dataclass
class TripletConfig(MethodConfig):
    margin: float = param(
        0.5,
        "Margin between the anchor-negative and anchor-positive squared distances on the "
        "unit sphere (distances lie in 0-4; FaceNet used 0.2). 0 lets the collapsed "
        "solution reach zero loss.",
        min=0.0,
        max=4.0,
    )
    negative: str = param(
        "random",
        "How each anchor's negative is chosen: 'random' (view 2 of another image of the "
        "batch) or 'hard' (the closest view 2 of another image of the batch).",
        choices=("random", "hard"),
        collapse="'hard' collapses from a random start: the closest other image is about as "
        "near as the positive, the pull and the push nearly cancel, and everything shrinks "
        "to one point (FaceNet, section 3.2, warns of this 'collapsed model').",
    )
    proj_hidden_dim: int = param(512, "Hidden width of the projection MLP.", min=16, max=8192)
    proj_dim: int = param(128, "Output dimension of the projection MLP (FaceNet: 128).",
                          min=2, max=8192)


@register_method(
    "triplet",
    config=TripletConfig,
    family="contrastive",
    description="The simplest contrastive idea: two views of an image closer than another "
    "image, by a margin (triplet loss).",
    paper="Schroff et al. 2015, FaceNet: A Unified Embedding for Face Recognition and "
    "Clustering",
    gpu_preset={"optim.batch_size": 256, "optim.max_steps": 3000, "augment.crop_min_scale": 0.2},
    collapse_advice=(
        "Hard negatives early in training collapse triplet losses: use random negatives "
        "or a smaller margin."
    ),
)
class Triplet(TwoViewMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: TripletConfig = cfg.method  # type: ignore[assignment]
        self.margin = m.margin
        self.negative = m.negative
        self.projector = mlp_head(feature_dim, m.proj_hidden_dim, m.proj_dim)

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        n = images.shape[0]
        views = self.two_views(images, augment, generator)
        z = F.normalize(self.projector(self.backbone(views)).float(), dim=1)
        a, p = z[:n], z[n:]
        # negatives come from the whole batch: this process's images are rows
        # start .. start + n - 1 of the gathered view-2 embeddings
        p_all, start = gather(p), rank() * n
        own = torch.arange(start, start + n, device=z.device)
        if self.negative == "hard":
            with torch.no_grad():
                d = torch.cdist(a, p_all).pow(2)
                d[torch.arange(n, device=z.device), own] = float("inf")
                idx = d.argmin(dim=1)
        else:
            idx = (own - 1) % p_all.shape[0]  # the previous image of the batch
        neg = p_all[idx]
        loss = triplet_margin(a, p, neg, self.margin)
        with torch.no_grad():
            d_pos = (a - p).pow(2).sum(1)
            d_neg = (a - neg).pow(2).sum(1)
            active = (d_pos - d_neg + self.margin > 0).float().mean()
        return StepOutput(
            loss,
            {
                "positive_distance": d_pos.mean(),
                "negative_distance": d_neg.mean(),
                "active_fraction": active,
            },
        )
