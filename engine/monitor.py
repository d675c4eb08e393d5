"""Representation health measured on a fixed monitor subset: collapse scores and kNN.

Formulas: docs/ARCHITECTURE.md section 6. All functions take plain tensors and return floats,
so they are tested on constructed embeddings where the answer is known.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from engine.knn import knn_accuracy  # noqa: F401  (re-exported)
from engine.verdict import (  # noqa: F401  (re-exported; torch-free for the GUI)
    COMPLETE_STD_FRACTION,
    DIMENSIONAL_RANK_FRACTION,
    VERDICT_TEXT,
    collapse_verdict,
)


def collapse_std(z: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalised embeddings.

    For embeddings spread uniformly on the sphere it approaches ``1/sqrt(d)``; when every
    input maps to the same point it falls to 0 (complete collapse).
    """
    return float(output_std(z.double()))


def output_std(z: torch.Tensor) -> torch.Tensor:
    """:func:`collapse_std` as a detached tensor, cheap enough to stream every step.

    SimSiam's collapse indicator (Chen & He 2021, Fig. 2); kept as a tensor so the
    training step does not wait for the device.
    """
    z = z.detach()
    return F.normalize(z if z.dtype == torch.float64 else z.float(), dim=1).std(0).mean()


def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): ``exp(-sum p log p)`` with ``p = s / sum(s) + eps``.

    ``s`` are the singular values of the (normalised) embedding matrix, obtained from the
    eigenvalues of ``Z^T Z`` (d x d), which is much cheaper than an SVD of the N x d matrix.
    It is close to ``d`` for isotropic embeddings and falls towards 1 as they collapse onto
    fewer directions (dimensional collapse) even when the per-dim std still looks fine.
    """
    zn = F.normalize(z.double(), dim=1)
    eig = torch.linalg.eigvalsh(zn.t() @ zn).clamp_min(0)
    s = eig.sqrt()
    total = s.sum()
    if total <= 0:
        return 1.0
    p = s / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


def spectrum(z: torch.Tensor, max_values: int = 512) -> list[float]:
    """log10 eigenvalues of the covariance of the normalised embeddings, largest first.

    Jing, Vincent, LeCun, Tian 2022 ("Understanding Dimensional Collapse in Contrastive
    Self-supervised Learning"): a healthy embedding's spectrum decays smoothly; dimensional
    collapse shows as a cliff, the tail dropping by orders of magnitude. Values below
    1e-12 of the total are clipped there so the plot stays finite.
    """
    zn = F.normalize(z.double(), dim=1)
    zc = zn - zn.mean(0, keepdim=True)
    cov = zc.t() @ zc / max(1, zn.shape[0] - 1)
    eig = torch.linalg.eigvalsh(cov).flip(0).clamp_min(0)
    floor = max(float(eig.sum()) * 1e-12, 1e-30)
    return [float(v) for v in eig[:max_values].clamp_min(floor).log10()]


def alignment(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Mean squared distance between normalised embeddings of positive pairs (two views
    of the same image): Wang & Isola 2020, "Understanding Contrastive Representation
    Learning through Alignment and Uniformity on the Hypersphere". 0 is perfect; 4 is
    opposite points. A collapsed encoder is perfectly aligned, so read it with uniformity.
    """
    a, b = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    return float((a - b).pow(2).sum(1).mean())


def uniformity(z: torch.Tensor, t: float = 2.0, max_points: int = 1024) -> float:
    """``log E exp(-t ||zi - zj||^2)`` over pairs of distinct normalised embeddings (Wang &
    Isola 2020): 0 when every point is the same (complete collapse), lower (about -4 for
    uniform points in high dimension with t = 2) the more evenly they cover the sphere.
    """
    zn = F.normalize(z[:max_points].double(), dim=1)
    n = zn.shape[0]
    if n < 2:
        return 0.0
    d2 = torch.cdist(zn, zn).pow(2)
    off = ~torch.eye(n, dtype=torch.bool)
    vals = -t * d2[off]
    return float(torch.logsumexp(vals, 0) - math.log(vals.numel()))


def anisotropy(z: torch.Tensor) -> float:
    """The mean cosine similarity between the embeddings of two different samples
    (Ethayarajh 2019's anisotropy): 0 for directions spread evenly, 1 when every sample
    points the same way. Exact over all pairs, from the norm of the unit vectors' sum:
    ``(|sum_i u_i|^2 - n) / (n (n - 1))``."""
    n = z.shape[0]
    if n < 2:
        return 0.0
    u = F.normalize(z.double(), dim=1)
    total = float(u.sum(0).pow(2).sum())
    return (total - n) / (n * (n - 1))
