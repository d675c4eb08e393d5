import math

import torch

from engine.losses import nt_xent


def test_nt_xent_matches_hand_computed_value():
    # Two orthogonal images, each view identical to its partner: for every anchor the
    # positive has cosine 1 and the two negatives cosine 0, so with T = 1
    # loss = -log(e / (e + 1 + 1)).
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert math.isclose(float(nt_xent(z, z.clone(), 1.0)), math.log((2 + math.e) / math.e),
                        rel_tol=1e-6)
    # T = 0.5 doubles every logit: -log(e^2 / (e^2 + 2))
    assert math.isclose(float(nt_xent(z, z.clone(), 0.5)), math.log(1 + 2 * math.exp(-2)),
                        rel_tol=1e-6)


def test_nt_xent_scale_invariant_and_symmetric():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    base = nt_xent(z1, z2, 0.3)
    assert torch.allclose(base, nt_xent(3 * z1, 0.5 * z2, 0.3), atol=1e-6)
    assert torch.allclose(base, nt_xent(z2, z1, 0.3), atol=1e-6)
    perm = torch.randperm(8, generator=g)
    assert torch.allclose(base, nt_xent(z1[perm], z2[perm], 0.3), atol=1e-6)


def test_nt_xent_lower_for_aligned_views():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(16, 8, generator=g)
    aligned = nt_xent(z1, z1 + 0.01 * torch.randn(16, 8, generator=g), 0.5)
    random = nt_xent(z1, torch.randn(16, 8, generator=g), 0.5)
    assert aligned < random
