"""MoCo v2: the InfoNCE-with-queue loss, the FIFO queue in training, the temperature switch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from engine import events as ev
from engine.augment import ViewAugment
from engine.losses import info_nce
from engine.model import build_model
from engine.runs import RunFolder
from engine.train import Trainer
from tests.engine.conftest import last, small_config, train_once

# ------------------------------------------------------------------------------ loss


def test_info_nce_matches_hand_computed_value():
    # Query 1 = key 1 = e1, query 2 = key 2 = e2, queue = {e2, -e1}. With T = 1:
    #   query 1 logits [e1.e1, e1.e2, e1.(-e1)] = [1, 0, -1] -> -log(e / (e + 1 + e^-1))
    #                                                          = log(1 + e^-1 + e^-2)
    #   query 2 logits [e2.e2, e2.e2, e2.(-e1)] = [1, 1,  0] -> -log(e / (e + e + 1))
    #                                                          = log(2 + e^-1)
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    e = math.e
    expected = (math.log(1 + 1 / e + 1 / e**2) + math.log(2 + 1 / e)) / 2
    assert math.isclose(float(info_nce(q, q.clone(), queue, 1.0)), expected, rel_tol=1e-6)
    # T = 0.5 doubles every logit: query 1 -> log(1 + e^-2 + e^-4), query 2 -> log(2 + e^-2)
    expected = (math.log(1 + e**-2 + e**-4) + math.log(2 + e**-2)) / 2
    assert math.isclose(float(info_nce(q, q.clone(), queue, 0.5)), expected, rel_tol=1e-6)


def test_info_nce_invariances():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    queue = torch.randn(50, 16, generator=g)
    base = info_nce(q, k, queue, 0.2)
    # the positive sits at index 0 whatever the order of the queue
    assert torch.allclose(base, info_nce(q, k, queue[torch.randperm(50, generator=g)], 0.2),
                          atol=1e-6)
    # a batch permutation applied to queries and keys alike changes nothing
    perm = torch.randperm(8, generator=g)
    assert torch.allclose(base, info_nce(q[perm], k[perm], queue, 0.2), atol=1e-6)
    # inputs are L2-normalised inside
    assert torch.allclose(base, info_nce(3 * q, 0.5 * k, 2 * queue, 0.2), atol=1e-6)


def test_info_nce_rewards_the_positive_not_a_negative():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(16, 8, generator=g)
    queue = torch.randn(64, 8, generator=g)
    aligned = info_nce(q, q + 0.01 * torch.randn(16, 8, generator=g), queue, 0.2)
    # the same vectors, but the "positive" is now a random vector
    wrong = info_nce(q, torch.randn(16, 8, generator=g), queue, 0.2)
    assert aligned < wrong
    # the positive in the queue as well: the loss is then at least log 2 per query
    dup = info_nce(q, q, torch.cat([queue, q]), 0.2)
    assert float(dup) > math.log(2) - 1e-6


# ------------------------------------------------------------------------------ method


def test_queue_is_filled_fifo_with_both_views_keys():
    """One training step enqueues the keys of view 1 then view 2 (ptr advances by 2 B)."""
    cfg = small_config("moco")
    cfg.set("method.queue_size", 100)
    torch.manual_seed(0)
    model, _ = build_model(cfg, torch.device("cpu"))
    model.train()
    augment = ViewAugment(cfg.augment, cfg.data.resolution)
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    before = model.queue.keys.clone()

    gen = torch.Generator().manual_seed(3)
    views = torch.cat([augment(images, gen), augment(images, gen)])
    with torch.no_grad():
        keys = F.normalize(model.key_projector(model.key_backbone(views)), dim=1)
    model.training_step(images, augment, torch.Generator().manual_seed(3))
    assert int(model.queue.ptr) == 64
    assert torch.allclose(model.queue.keys[:32], keys[:32], atol=1e-5)  # view 1 first
    assert torch.allclose(model.queue.keys[32:64], keys[32:], atol=1e-5)  # then view 2
    assert torch.equal(model.queue.keys[64:], before[64:])  # the rest untouched

    # a second step wraps around: 64 + 64 = 128 -> pointer at 28, the oldest overwritten
    model.training_step(images, augment, torch.Generator().manual_seed(4))
    assert int(model.queue.ptr) == 28
    assert not torch.allclose(model.queue.keys[:28], keys[:28])
    assert torch.allclose(model.queue.keys[28:64], keys[28:64], atol=1e-5)


def test_moco_trains_and_streams_its_metrics(tmp_path):
    events = list(Trainer(small_config("moco", 6), tmp_path).run())
    fin = events[-1]
    assert isinstance(fin, ev.Finished) and fin.status == "finished", fin
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 6 and all(math.isfinite(s.loss) for s in steps)
    for s in steps:
        for name in ("target_momentum", "positive_similarity", "negative_similarity"):
            assert name in s.extra and math.isfinite(s.extra[name]), name
        assert s.extra["target_momentum"] == pytest.approx(0.99)
    # the queue pointer advanced by 2 x batch per step (4096 slots, 6 x 64 keys)
    ckpt = torch.load(RunFolder(fin.run_dir).last_checkpoint, weights_only=True)
    assert int(ckpt["model"]["queue.ptr"]) == 6 * 64


def test_key_encoder_follows_the_query_encoder_by_ema():
    cfg = small_config("moco")
    cfg.set("method.momentum", 0.9)
    model, _ = build_model(cfg, torch.device("cpu"))
    q0 = [p.detach().clone() for p in model.backbone.parameters()]
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    k0 = [p.detach().clone() for p in model.key_backbone.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(q0, k0, strict=True))  # starts as a copy
    out = model.after_step(0, 10)
    assert out == {"target_momentum": 0.9}
    for k, q, old in zip(model.key_backbone.parameters(), model.backbone.parameters(), k0,
                         strict=True):
        assert torch.allclose(k, 0.9 * old + 0.1 * q)
    assert all(not p.requires_grad for p in model.key_backbone.parameters())


def report_at_temperature(temperature: float, tmp_path) -> ev.MonitorReport:
    """Final monitor report of a 110-step run (queue of 256 keys = 4 steps at batch 32).

    At 110 steps (2026-12-02, Zen 3 EPYC, seed 0): T = 0.2 std 0.0407, rank 9.1;
    T = 0.01 std 0.0126; T = 5 rank 4.9 (at 80 steps T = 5 kept rank 6.4 of 9.2)."""
    cfg = small_config("moco", 110, **{"method.queue_size": 256,
                                       "method.temperature": temperature,
                                       "monitor.every_steps": 110})
    return last(train_once(cfg, tmp_path / f"t{temperature}"), ev.MonitorReport)


def test_tiny_temperature_collapses(tmp_path):
    """temperature = 0.01 (collapse switch): every embedding falls into one narrow cone.

    Measured (seed 0, 150 steps): T = 0.2 ends with monitor std 0.0529 and effective rank
    10.1; T = 0.01 with std 0.0145 (cosine to positives 0.98, to negatives 0.97).
    """
    healthy = report_at_temperature(0.2, tmp_path)
    cold = report_at_temperature(0.01, tmp_path)
    assert cold.std < 0.5 * healthy.std


def test_huge_temperature_collapses_dimensions(tmp_path):
    """temperature = 5 (collapse switch): the embedding keeps its spread but loses rank.

    Measured (seed 0, 150 steps): T = 0.2 ends with effective rank 10.1 and kNN 0.17;
    T = 5 with rank 4.0 (std 0.075: spread over a few directions only) and kNN 0.12.
    """
    healthy = report_at_temperature(0.2, tmp_path)
    hot = report_at_temperature(5.0, tmp_path)
    assert hot.effective_rank < 0.65 * healthy.effective_rank
