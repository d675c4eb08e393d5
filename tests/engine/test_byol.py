"""BYOL: the normalised MSE loss, the EMA target and its momentum, the two collapse switches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from engine import events as ev
from engine.losses import byol_loss
from engine.model import build_model
from engine.runs import RunFolder
from engine.train import Trainer
from tests.engine.conftest import small_config


def final_report(cfg, tmp_path) -> ev.MonitorReport:
    events = list(Trainer(cfg, tmp_path).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    return [e for e in events if isinstance(e, ev.MonitorReport)][-1]


# ------------------------------------------------------------------------------ loss


def test_byol_loss_matches_hand_computed_value():
    # pair 1: p = (1, 0), z = (0, 1): cos 0 -> 2 - 2 * 0 = 2
    # pair 2: p = (1, 1), z = (2, 2): cos 1 -> 2 - 2 * 1 = 0
    # pair 3: p = (1, 0), z = (1, 1): cos 1/sqrt(2) -> 2 - sqrt(2)
    # mean = (2 + 0 + 2 - sqrt(2)) / 3
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    z = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, 1.0]])
    assert math.isclose(float(byol_loss(p, z)), (4 - math.sqrt(2)) / 3, rel_tol=1e-6)
    # opposite directions: 2 - 2 * (-1) = 4, the maximum
    assert math.isclose(float(byol_loss(p[:1], -p[:1])), 4.0, rel_tol=1e-6)


def test_byol_loss_is_normalised_mse_and_invariant():
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    base = byol_loss(p, z)
    mse = (F.normalize(p, dim=1) - F.normalize(z, dim=1)).pow(2).sum(1).mean()
    assert torch.allclose(base, mse, atol=1e-6)
    assert torch.allclose(base, byol_loss(z, p), atol=1e-6)  # symmetric in its arguments
    assert torch.allclose(base, byol_loss(3 * p, 0.2 * z), atol=1e-6)  # scale-free
    perm = torch.randperm(8, generator=g)
    assert torch.allclose(base, byol_loss(p[perm], z[perm]), atol=1e-6)


# ------------------------------------------------------------------------------ method


def test_byol_trains_and_streams_its_metrics(tmp_path):
    events = list(Trainer(small_config("byol", 6), tmp_path).run())
    assert isinstance(events[-1], ev.Finished) and events[-1].status == "finished"
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 6 and all(math.isfinite(s.loss) and 0 <= s.loss <= 8 for s in steps)
    for s in steps:
        assert {"target_momentum", "output_std"} <= set(s.extra)
        assert 0 < s.extra["output_std"] <= 1
    # the cosine schedule rises from the base momentum towards 1
    moms = [s.extra["target_momentum"] for s in steps]
    assert moms[0] == pytest.approx(0.9)  # the CPU preset's base (a 10-step horizon)
    assert moms == sorted(moms) and moms[-1] < 1


def test_target_is_ema_of_online_and_gets_no_gradient():
    cfg = small_config("byol")
    model, _ = build_model(cfg, torch.device("cpu"))
    assert all(not p.requires_grad for p in model.target_backbone.parameters())
    assert all(not p.requires_grad for p in model.target_projector.parameters())
    old = [p.detach().clone() for p in model.target_projector.parameters()]
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    m = model.after_step(0, 100)["target_momentum"]
    assert m == pytest.approx(cfg.method.base_momentum)
    for t, o, online in zip(model.target_projector.parameters(), old,
                            model.projector.parameters(), strict=True):
        assert torch.allclose(t, m * o + (1 - m) * online)
    assert model.after_step(100, 100)["target_momentum"] == pytest.approx(1.0)


def test_zero_base_momentum_means_no_ema_throughout():
    cfg = small_config("byol")
    cfg.set("method.base_momentum", 0.0)
    model, _ = build_model(cfg, torch.device("cpu"))
    for step in (0, 50, 99, 100):
        with torch.no_grad():
            for p in model.backbone.parameters():
                p.add_(0.1)
        assert model.after_step(step, 100)["target_momentum"] == 0.0
        for t, o in zip(model.target_backbone.parameters(), model.backbone.parameters(),
                        strict=True):
            assert torch.equal(t, o)


def test_no_predictor_collapses(tmp_path):
    """use_predictor = false (collapse switch): the projections collapse onto a point.

    Measured (seed 0, 60 steps; 2026-12-03, 2-core Zen 1 EPYC): with the predictor the
    monitor std is 0.0328 and the effective rank 8.0; without it std 0.0018 and rank 2.3
    (loss 0.004: trivially matched). At 120 steps on a Zen 3: 0.0352 / 8.6 against
    0.0047 / 2.5.
    """
    end = {"monitor.every_steps": 60}  # only the final report is read
    on = final_report(small_config("byol", 60, **end, **{"method.use_predictor": False}),
                      tmp_path / "a")
    off = final_report(small_config("byol", 60, **end), tmp_path / "b")
    assert on.std < 0.25 * off.std
    assert on.effective_rank < 0.5 * off.effective_rank


def test_zero_momentum_keeps_the_target_equal_to_the_online_network(tmp_path):
    """base_momentum = 0 (collapse switch of the BYOL paper, Table 5a) trains with momentum 0.

    It does NOT collapse here, as SimSiam (Chen & He 2021) found for predictor plus
    stop-gradient. Measured (seed 0): after 120 steps momentum 0.99 gives monitor std
    0.0352 / effective rank 8.6 and momentum 0 gives 0.0388 / 5.2; after 300 steps
    momentum 0 still has std 0.0452 / rank 6.7. So this only checks the mechanism.
    """
    cfg = small_config("byol", 6, **{"method.base_momentum": 0.0})
    events = list(Trainer(cfg, tmp_path).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert [s.extra["target_momentum"] for s in steps] == [0.0] * 6
    ckpt = torch.load(RunFolder(events[-1].run_dir).last_checkpoint, weights_only=True)
    model = ckpt["model"]
    for key, value in model.items():
        if key.startswith("target_backbone."):
            assert torch.equal(value, model["backbone." + key.removeprefix("target_backbone.")])


def test_predictor_learning_rate_multiplier_moves_only_the_predictor_faster(tmp_path):
    """One AdamW step moves each weight by about lr x its group's multiplier."""
    def after_one_step(mult: float) -> dict[str, torch.Tensor]:
        cfg = small_config("byol", 1, **{"optim.warmup_steps": 0, "optim.weight_decay": 0.0,
                                         "method.predictor_lr_mult": mult})
        events = list(Trainer(cfg, tmp_path / str(mult)).run())
        assert isinstance(events[-1], ev.Finished), events[-1]
        return torch.load(RunFolder(events[-1].run_dir).last_checkpoint,
                          weights_only=True)["model"]

    slow, fast = after_one_step(1.0), after_one_step(10.0)
    lr = small_config("byol").optim.lr
    moved = {k: (fast[k].float() - slow[k].float()).abs().max().item() for k in slow}
    for key, diff in moved.items():
        if key.startswith("predictor.") and key.endswith("weight") and slow[key].ndim > 1:
            assert 5 * lr < diff < 10 * lr, (key, diff)  # (10 - 1) x lr at most
        elif not key.startswith("predictor."):
            assert diff == 0.0, key  # the encoder's first step does not see the multiplier


def test_optimizer_groups_carry_the_multiplier_and_weight_decay(tmp_path):
    from engine.model import build_optimizer

    cfg = small_config("byol", **{"method.predictor_lr_mult": 4.0, "optim.weight_decay": 0.05})
    model, _ = build_model(cfg, torch.device("cpu"))
    opt = build_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    for g in opt.param_groups:
        assert g["weight_decay"] == (0.05 if g["decays"] else 0.0)
        for p in g["params"]:
            name = names[id(p)]
            seen.append(name)
            assert g["lr_mult"] == (4.0 if name.startswith("predictor.") else 1.0), name
            assert g["decays"] == (p.ndim > 1), name
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable)  # every trainable parameter exactly once


def test_checkpoint_optimizer_state_from_before_group_settings_still_loads():
    from engine.model import build_optimizer, load_optimizer_state

    cfg = small_config("byol", **{"method.predictor_lr_mult": 1.0})  # the two groups of old
    model, _ = build_model(cfg, torch.device("cpu"))
    state = build_optimizer(model, cfg).state_dict()
    for g in state["param_groups"]:  # as saved before groups had these settings
        del g["lr_mult"], g["decays"]
    opt = build_optimizer(model, cfg)
    assert load_optimizer_state(opt, state)
    assert [(g["lr_mult"], g["decays"]) for g in opt.param_groups] == [(1.0, True), (1.0, False)]


def test_resuming_a_run_saved_with_other_groups_warns_and_continues(tmp_path):
    """A run saved with one group for all weights, resumed with the predictor split off
    (as a run saved before the multiplier existed, with a default above 1)."""
    from engine.presets import load_toml

    events = list(Trainer(small_config("byol", 3, **{"method.predictor_lr_mult": 1.0}),
                          tmp_path).run())
    run = RunFolder(events[-1].run_dir)
    cfg = load_toml(run.config_path)
    cfg.set("method.predictor_lr_mult", 10.0)
    cfg.save(run.config_path)
    events = list(Trainer.resume(run.path, max_steps=6).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    warnings = [e.message for e in events if isinstance(e, ev.RunWarning)]
    assert any("optimiser's moments start afresh" in w for w in warnings), warnings
    assert [e.step for e in events if isinstance(e, ev.StepMetrics)] == [4, 5, 6]
