"""SSL losses as pure functions of tensors, each citing its paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalised temperature-scaled cross entropy (SimCLR; Chen et al. 2020, eq. 1).

    For 2N embeddings of N positive pairs, with cosine similarity s and temperature t,
    ``l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t)``, averaged over all 2N
    anchors. Each anchor has one positive (its other view) and 2N - 2 negatives.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)
