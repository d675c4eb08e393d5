"""Barlow Twins: the redundancy-reduction loss and a short training run."""

import math

import torch

from engine import events as ev
from engine.losses import barlow_twins_loss
from engine.train import Trainer
from tests.engine.conftest import small_config


def test_loss_matches_hand_computed_value():
    # N = 2, d = 2. Standardising each column along the batch (biased std, eps = 0):
    #   z1 = [[1, 2], [3, 0]]: column 0 is 1, 3 (mean 2, std 1) -> -1, 1;
    #                          column 1 is 2, 0 (mean 1, std 1) -> 1, -1.
    #   z2 = [[0, 0], [2, 4]]: column 0 is 0, 2 (mean 1, std 1) -> -1, 1;
    #                          column 1 is 0, 4 (mean 2, std 2) -> -1, 1.
    # C = z1n^T z2n / 2: C00 = (1 + 1)/2 = 1, C01 = (1 + 1)/2 = 1,
    #                    C10 = (-1 - 1)/2 = -1, C11 = (-1 - 1)/2 = -1.
    # on_diag = (1 - 1)^2 + (1 + 1)^2 = 4; off_diag = 1^2 + (-1)^2 = 2;
    # loss = 4 + 0.5 * 2 = 5 with lambda = 0.5.
    z1 = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    z2 = torch.tensor([[0.0, 0.0], [2.0, 4.0]])
    loss, on, off = barlow_twins_loss(z1, z2, lambd=0.5, eps=0.0)
    assert math.isclose(float(on), 4.0, rel_tol=1e-6)
    assert math.isclose(float(off), 2.0, rel_tol=1e-6)
    assert math.isclose(float(loss), 5.0, rel_tol=1e-6)
    # Identical, decorrelated views give C = I: the loss is 0.
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    loss, on, off = barlow_twins_loss(z, z.clone(), lambd=0.5, eps=0.0)
    assert float(loss) < 1e-10


def test_loss_symmetric_permutation_and_affine_invariant():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    z2 = z2 + z1  # correlated views, so the diagonal term is not trivial
    base = barlow_twins_loss(z1, z2, 5e-3)
    perm = torch.randperm(16, generator=g)
    for other in (
        barlow_twins_loss(z2, z1, 5e-3),  # C -> C^T
        barlow_twins_loss(z1[perm], z2[perm], 5e-3),
    ):
        for a, b in zip(base, other, strict=True):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    # Per-dimension affine rescaling (positive scales) is removed by the standardisation.
    scale = torch.rand(8, generator=g) * 10 + 0.1
    shift = torch.randn(8, generator=g) * 5
    rescaled = barlow_twins_loss(z1 * scale + shift, z2 * scale.flip(0) - shift, 5e-3)
    for a, b in zip(base, rescaled, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_training_steps_report_metrics(tmp_path):
    # the monitor at the start and the end only: the steps are what is checked
    cfg = small_config("barlow_twins", 6, **{"monitor.every_steps": 1000})
    events = list(Trainer(cfg, tmp_path).run())
    assert isinstance(events[-1], ev.Finished) and events[-1].status == "finished"
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 6
    for e in steps:
        assert math.isfinite(e.loss)
        assert {"on_diag", "off_diag"} <= set(e.extra)
        assert all(math.isfinite(v) for v in e.extra.values())

