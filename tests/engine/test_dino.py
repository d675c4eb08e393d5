"""DINO: the self-distillation loss, the centre, multi-crop and both collapse switches."""

import math

import pytest
import torch

from engine import events as ev
from engine.augment import ViewAugment
from engine.losses import dino_center_update, dino_loss
from engine.model import build_model
from engine.runs import RunFolder
from engine.train import Trainer
from tests.engine.conftest import last, small_config, train_once

#: The monitor at the start and the end only: these runs read the steps or the final report.
QUIET = {"monitor.every_steps": 1000}


def test_loss_matches_hand_computed_value():
    # K = 2, one image, two views, both temperatures 1, centre 0:
    #   t1 = [0, 0]     -> q1 = [1/2, 1/2];   t2 = [ln 3, 0] -> q2 = [3/4, 1/4]
    #   s1 = [0, 0]     -> p1 = [1/2, 1/2];   s2 = [ln 3, 0] -> p2 = [3/4, 1/4]
    # Pairs of different views: H(q1, p2) = -(1/2 ln 3/4 + 1/2 ln 1/4) and
    # H(q2, p1) = -(3/4 + 1/4) ln 1/2 = ln 2; the loss is their mean.
    ln3 = math.log(3.0)
    t = [torch.tensor([[0.0, 0.0]]), torch.tensor([[ln3, 0.0]])]
    s = [torch.tensor([[0.0, 0.0]]), torch.tensor([[ln3, 0.0]])]
    zero = torch.zeros(1, 2)
    expected = (-(0.5 * math.log(0.75) + 0.5 * math.log(0.25)) + math.log(2.0)) / 2
    assert math.isclose(float(dino_loss(s, t, zero, 1.0, 1.0)), expected, rel_tol=1e-6)
    # Temperatures divide the logits: halving both logits and temperatures changes nothing.
    half = [x / 2 for x in s]
    assert math.isclose(float(dino_loss(half, [x / 2 for x in t], zero, 0.5, 0.5)), expected,
                        rel_tol=1e-6)
    # The centre is subtracted from the teacher: centre [ln 3, 0] makes q2 uniform and q1
    # = [1/4, 3/4], so H(q1, p2) = -(1/4 ln 3/4 + 3/4 ln 1/4) and H(q2, p1) = ln 2.
    c = torch.tensor([[ln3, 0.0]])
    q1_target = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    assert math.isclose(float(dino_loss(s, t, c, 1.0, 1.0)), (q1_target + math.log(2.0)) / 2,
                        rel_tol=1e-6)


def test_loss_view_order_and_batch_permutation_invariant():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(8, 16, generator=g) for _ in range(4)]  # 2 global + 2 local views
    t = [torch.randn(8, 16, generator=g) for _ in range(2)]
    c = torch.randn(1, 16, generator=g)
    base = dino_loss(s, t, c, 0.1, 0.04)
    swapped = dino_loss([s[1], s[0], s[2], s[3]], [t[1], t[0]], c, 0.1, 0.04)
    assert torch.allclose(base, swapped, atol=1e-5)
    perm = torch.randperm(8, generator=g)
    permuted = dino_loss([x[perm] for x in s], [x[perm] for x in t], c, 0.1, 0.04)
    assert torch.allclose(base, permuted, atol=1e-5)
    # the teacher side gets no gradient
    t_req = [x.clone().requires_grad_() for x in t]
    s_req = [x.clone().requires_grad_() for x in s]
    dino_loss(s_req, t_req, c, 0.1, 0.04).backward()
    assert all(x.grad is None for x in t_req)
    assert all(x.grad is not None for x in s_req)


def test_center_update_formula():
    # C = 0.9 * [1, 2] + 0.1 * mean([3, 4], [5, 0]) = [0.9, 1.8] + 0.1 * [4, 2] = [1.3, 2.0]
    center = torch.tensor([[1.0, 2.0]])
    out = dino_center_update(center, torch.tensor([[3.0, 4.0], [5.0, 0.0]]), 0.9)
    assert out.shape == (1, 2)
    assert torch.allclose(out, torch.tensor([[1.3, 2.0]]))
    assert torch.equal(center, torch.tensor([[1.0, 2.0]]))  # pure: the input is unchanged


def test_teacher_entropy_falls_with_lower_teacher_temperature():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    entropies = []
    for temp in (1.0, 0.1, 0.02):
        cfg = small_config("dino", **{"method.teacher_temp": temp,
                                      "method.warmup_teacher_temp": temp})
        torch.manual_seed(0)
        model, _ = build_model(cfg, torch.device("cpu"))
        out = model.training_step(images, ViewAugment(cfg.augment, 32),
                                  torch.Generator().manual_seed(0))
        entropies.append(float(out.metrics["teacher_entropy"]))
        assert float(out.metrics["kl"]) >= -1e-4
    assert entropies[0] > entropies[1] > entropies[2]
    assert entropies[0] <= math.log(cfg.method.out_dim) + 1e-4


def test_teacher_temperature_warmup():
    cfg = small_config("dino", **{"method.warmup_teacher_temp": 0.04,
                                  "method.teacher_temp": 0.07,
                                  "method.warmup_teacher_temp_steps": 10})
    model, _ = build_model(cfg, torch.device("cpu"))
    assert math.isclose(model.teacher_temperature(0), 0.04)
    assert math.isclose(model.teacher_temperature(5), 0.055)
    assert math.isclose(model.teacher_temperature(10), 0.07)
    assert math.isclose(model.teacher_temperature(1000), 0.07)
    cfg.set("method.sharpening", False)
    model, _ = build_model(cfg, torch.device("cpu"))
    assert model.teacher_temperature(0) == cfg.method.student_temp


def test_training_steps_report_metrics_and_save_the_center(tmp_path):
    events = list(Trainer(small_config("dino", 6, **QUIET), tmp_path).run())
    fin = events[-1]
    assert isinstance(fin, ev.Finished) and fin.status == "finished"
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 6
    for e in steps:
        assert math.isfinite(e.loss)
        assert {"teacher_entropy", "kl", "target_momentum"} <= set(e.extra)
        assert all(math.isfinite(v) for v in e.extra.values())
    assert 0.97 <= steps[0].extra["target_momentum"] < steps[-1].extra["target_momentum"] <= 1
    state = torch.load(RunFolder(fin.run_dir).last_checkpoint, weights_only=True)["model"]
    assert state["center"].abs().sum() > 0
    assert int(state["steps_done"]) == 6


def test_multi_crop_runs(tmp_path):
    cfg = small_config("dino", 3, **QUIET, **{"method.local_crops": 2})
    events = list(Trainer(cfg, tmp_path).run())
    assert isinstance(events[-1], ev.Finished) and events[-1].step == 3, events[-1]
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert all(math.isfinite(e.loss) for e in steps)


#: Steps of each collapse-switch run; one healthy run serves both switches' tests.
COLLAPSE_STEPS = 120


def _final(tmp_path, switch: str | None) -> tuple[ev.MonitorReport, ev.StepMetrics]:
    """Final monitor report and last step of a run with ``method.<switch>`` off."""
    overrides = {f"method.{switch}": False} if switch else {}
    cfg = small_config("dino", COLLAPSE_STEPS, **{**QUIET, **overrides})
    events = train_once(cfg, tmp_path / (switch or "healthy"))
    return last(events, ev.MonitorReport), last(events, ev.StepMetrics)


def test_without_centering_one_prototype_dominates(tmp_path):
    """120 steps (seed 0; 2026-12-03, 2-core Zen 1 EPYC, ~12 s per run). With centering
    the head's output keeps a per-dim std of 0.0184 (1/sqrt(1024) = 0.031) and the
    teacher's entropy is 6.60 (log 1024 = 6.93); without it the std falls to 0.0005
    (effective rank 7.6 -> 1.5) and the teacher's entropy to 0.000: the same one-hot
    prototype for every image."""
    on, on_step = _final(tmp_path, None)
    off, off_step = _final(tmp_path, "centering")
    assert off.std < 0.2 * on.std, (off.std, on.std)
    assert off_step.extra["teacher_entropy"] < 0.1
    assert on_step.extra["teacher_entropy"] > 3.0


@pytest.mark.slow
def test_without_sharpening_outputs_become_uniform(tmp_path):
    """The paper's signature of this collapse (Caron et al. 2021, Fig. 7): the teacher's
    entropy reaches log K and the student matches it, KL -> 0.

    120 steps (seed 0; 2026-12-03, 2-core Zen 1 EPYC): with sharpening the teacher's
    entropy is 6.60 and the KL 0.176; without it (teacher temperature = student
    temperature) the entropy is 6.926 of log(1024) = 6.931, uniform over the prototypes
    for every image, with KL 0.0037. The head's per-dim std is then 0.0099 against 0.0184
    and keeps falling (0.0080 at 150 steps; 0.0042 against 0.0165 at 200 on a Zen 3)."""
    on, on_step = _final(tmp_path, None)
    off, off_step = _final(tmp_path, "sharpening")
    log_k = math.log(1024)
    assert off_step.extra["teacher_entropy"] > log_k - 0.01
    assert on_step.extra["teacher_entropy"] < log_k - 0.2
    assert off_step.extra["kl"] < 0.01 and off_step.extra["kl"] < 0.1 * on_step.extra["kl"]
    assert off.std < 0.7 * on.std, (off.std, on.std)
