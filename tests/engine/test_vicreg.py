"""VICReg: the three loss terms, a short training run and the variance collapse switch."""

import math

import torch

from engine import events as ev
from engine.losses import vicreg_loss
from engine.train import Trainer
from tests.engine.conftest import small_config

#: the paper's weights (sim, var, cov), gamma and eps: VICReg's config defaults
W = (25.0, 25.0, 1.0, 1.0, 1e-4)

#: The monitor at the start and the end only: these runs read the steps or the final report.
QUIET = {"monitor.every_steps": 1000}


def test_loss_matches_hand_computed_value():
    # N = 2, d = 2, z1 = [[0, 0], [2, 2]], z2 = [[0, 0], [2, 0]].
    # invariance: mean of squared differences = (0 + 0 + 0 + 4) / 4 = 1.
    # variance (unbiased, eps = 1e-4): z1 columns are 0, 2 -> var 2, std 1.414 > 1 -> 0;
    #   z2 column 0 -> 0; column 1 is 0, 0 -> std sqrt(1e-4) = 0.01 -> relu(1 - 0.01) = 0.99;
    #   v = (mean(0, 0) + mean(0, 0.99)) / 2 = 0.2475.
    # covariance: z1 centred = [[-1, -1], [1, 1]] -> Cov = [[2, 2], [2, 2]] (divided by
    #   N - 1 = 1): off-diagonal squares 4 + 4 = 8, / d = 4; z2 centred = [[-1, 0], [1, 0]]
    #   -> Cov = [[2, 0], [0, 0]]: 0. c = 4 + 0 = 4.
    # loss = 25 * 1 + 25 * 0.2475 + 1 * 4 = 35.1875.
    z1 = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    z2 = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    loss, inv, var, cov = vicreg_loss(z1, z2, 25.0, 25.0, 1.0, 1.0, 1e-4)
    assert math.isclose(float(inv), 1.0, rel_tol=1e-6)
    assert math.isclose(float(var), 0.2475, rel_tol=1e-5)
    assert math.isclose(float(cov), 4.0, rel_tol=1e-6)
    assert math.isclose(float(loss), 35.1875, rel_tol=1e-5)


def test_loss_symmetric_and_permutation_invariant():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g) * 0.5
    base = vicreg_loss(z1, z2, *W)
    perm = torch.randperm(16, generator=g)
    for other in (vicreg_loss(z2, z1, *W), vicreg_loss(z1[perm], z2[perm], *W)):
        for a, b in zip(base, other, strict=True):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_each_term_has_its_zero_case():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, 8, generator=g)
    # identical views: no invariance penalty
    assert float(vicreg_loss(z, z.clone(), *W)[1]) == 0.0
    # every std at least gamma: no variance penalty (and some when the std is small)
    assert float(vicreg_loss(10 * z, 10 * z, *W)[2]) == 0.0
    assert float(vicreg_loss(0.1 * z, 0.1 * z, *W)[2]) > 0.8
    # orthogonal centred columns (Hadamard rows): no covariance penalty
    h = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, -1.0]])
    h[:, 2] = h[:, 0] * h[:, 1]
    assert float(vicreg_loss(h, h.clone(), *W)[3]) < 1e-10
    assert float(vicreg_loss(z, z, *W)[3]) > 0.0


def test_training_steps_report_metrics(tmp_path):
    events = list(Trainer(small_config("vicreg", 6, **QUIET), tmp_path).run())
    assert isinstance(events[-1], ev.Finished) and events[-1].status == "finished"
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 6
    for e in steps:
        assert math.isfinite(e.loss)
        assert {"invariance", "variance", "covariance"} <= set(e.extra)
        assert all(math.isfinite(v) for v in e.extra.values())


def _final_report(tmp_path, **overrides) -> ev.MonitorReport:
    events = list(Trainer(small_config("vicreg", 60, **{**QUIET, **overrides}), tmp_path).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    return [e for e in events if isinstance(e, ev.MonitorReport)][-1]


def test_without_variance_term_embeddings_collapse(tmp_path):
    """60 steps (seed 0; 2026-12-03, 2-core Zen 1 EPYC, ~4 s per run): with mu = 25 the
    expander output keeps a per-dim std of 0.026 (1/sqrt(512) = 0.044) and effective rank
    22.4; with mu = 0 the std falls to 0.005 and the rank to 5.3 (at 40 steps 0.008 and
    8.7 against 0.027 and 26.7; at 150 steps on a Zen 3, 0.007 and 7.8 against 0.037 and
    23.6)."""
    on = _final_report(tmp_path / "on")
    off = _final_report(tmp_path / "off", **{"method.variance_weight": 0.0})
    assert off.std < 0.4 * on.std, (off.std, on.std)
    assert off.effective_rank < 0.6 * on.effective_rank
