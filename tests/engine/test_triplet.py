"""Triplet loss: the hinge formula, its invariances, negative selection and the metrics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from engine import events as ev
from engine.augment import ViewAugment
from engine.losses import triplet_margin
from engine.model import build_model
from engine.train import Trainer
from tests.engine.conftest import small_config

# ------------------------------------------------------------------------------ loss


def test_triplet_margin_matches_hand_computed_value():
    # triplet 1: a = (0, 0), p = (1, 0), n = (0, 2): |a-p|^2 = 1, |a-n|^2 = 4
    #            max(0, 1 - 4 + 0.5) = 0          (already separated by more than the margin)
    # triplet 2: a = (0, 0), p = (2, 0), n = (1, 0): |a-p|^2 = 4, |a-n|^2 = 1
    #            max(0, 4 - 1 + 0.5) = 3.5
    # mean = 1.75
    a = torch.zeros(2, 2)
    p = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    n = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    assert math.isclose(float(triplet_margin(a, p, n, 0.5)), 1.75, rel_tol=1e-6)
    # margin 4: max(0, 1 - 4 + 4) = 1 and 4 - 1 + 4 = 7 -> mean 4
    assert math.isclose(float(triplet_margin(a, p, n, 4.0)), 4.0, rel_tol=1e-6)
    # a collapsed embedding (all points equal) costs exactly the margin
    assert math.isclose(float(triplet_margin(a, a, a, 0.5)), 0.5, rel_tol=1e-6)


def test_triplet_margin_invariances():
    g = torch.Generator().manual_seed(0)
    a, p, n = (F.normalize(torch.randn(8, 16, generator=g), dim=1) for _ in range(3))
    base = triplet_margin(a, p, n, 0.5)
    perm = torch.randperm(8, generator=g)
    assert torch.allclose(base, triplet_margin(a[perm], p[perm], n[perm], 0.5))
    shift = torch.randn(1, 16, generator=g)  # distances only: translation-invariant
    assert torch.allclose(base, triplet_margin(a + shift, p + shift, n + shift, 0.5), atol=1e-5)
    rot, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))  # ... and rotation-invariant
    assert torch.allclose(base, triplet_margin(a @ rot, p @ rot, n @ rot, 0.5), atol=1e-5)
    # swapping positive and negative turns every satisfied triplet into a violated one
    assert triplet_margin(a, a, n, 0.5) < triplet_margin(a, n, a, 0.5)


# ------------------------------------------------------------------------------ method


def test_triplet_trains_and_streams_its_metrics(tmp_path):
    for negative in ("random", "hard"):
        cfg = small_config("triplet", 6, **{"method.negative": negative})
        events = list(Trainer(cfg, tmp_path / negative).run())
        assert isinstance(events[-1], ev.Finished) and events[-1].status == "finished"
        steps = [e for e in events if isinstance(e, ev.StepMetrics)]
        assert len(steps) == 6
        for s in steps:
            assert math.isfinite(s.loss) and 0 <= s.loss <= 4.5
            x = s.extra
            assert {"positive_distance", "negative_distance", "active_fraction"} <= set(x)
            assert 0 <= x["positive_distance"] <= 4 and 0 <= x["negative_distance"] <= 4
            assert 0 <= x["active_fraction"] <= 1


def test_hard_negative_is_the_closest_other_view():
    cfg = small_config("triplet", **{"method.negative": "hard"})
    model, _ = build_model(cfg, torch.device("cpu"))
    augment = ViewAugment(cfg.augment, cfg.data.resolution)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    hard = model.training_step(images, augment, torch.Generator().manual_seed(0)).metrics
    model.negative = "random"
    rand = model.training_step(images, augment, torch.Generator().manual_seed(0)).metrics
    # same views: same positives, and the hardest negatives are never farther than random ones
    assert torch.allclose(hard["positive_distance"], rand["positive_distance"])
    assert hard["negative_distance"] <= rand["negative_distance"]
    assert hard["active_fraction"] >= rand["active_fraction"]


def test_hard_negatives_collapse(tmp_path):
    """negative = 'hard' (collapse switch): everything shrinks to one point (FaceNet 3.2).

    Measured (seed 0, 100 steps): random negatives end with monitor std 0.0423 and
    effective rank 10.7; hardest-in-batch negatives with std 0.0048 and rank 4.6, the
    loss stuck at the margin (0.50) and both distances near 0. At the 50 steps run here
    (2026-12-02, Zen 3 EPYC): std 0.0420 against 0.0067, rank 12.9 against 6.3.
    """
    reports = {}
    for negative in ("random", "hard"):
        cfg = small_config("triplet", 50, **{"method.negative": negative,
                                             "monitor.every_steps": 50})
        events = list(Trainer(cfg, tmp_path / negative).run())
        assert isinstance(events[-1], ev.Finished), events[-1]
        reports[negative] = [e for e in events if isinstance(e, ev.MonitorReport)][-1]
    assert reports["hard"].std < 0.25 * reports["random"].std
    assert reports["hard"].effective_rank < 0.6 * reports["random"].effective_rank
