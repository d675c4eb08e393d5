"""Colorization (Zhang, Isola, Efros 2016): the losses, grey input and embed, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import events as ev
from engine.augment import ViewAugment, denormalize, eval_transform, normalize
from engine.colour import rgb_to_grey, rgb_to_lab
from engine.errors import UserInputError
from engine.losses import ab_regression_loss, colorization_ce
from engine.model import build_model
from engine.train import Trainer
from tests.engine.conftest import small_config

# ------------------------------------------------------------------ losses


def test_colorization_ce_hand_computed():
    # one pixel, three bins: softmax(0, ln 2, 0) = (1/4, 1/2, 1/4); target 0.75 on bin 1,
    # 0.25 on bin 0: -(0.75 ln 1/2 + 0.25 ln 1/4) = 1.25 ln 2
    logits = torch.tensor([0.0, math.log(2), 0.0]).view(1, 3, 1, 1)
    bins, w = torch.tensor([[1, 0]]), torch.tensor([[0.75, 0.25]])
    assert math.isclose(float(colorization_ce(logits, bins, w)), 1.25 * math.log(2),
                        rel_tol=1e-6)
    assert math.isclose(float(colorization_ce(logits, bins, w, torch.tensor([2.0]))),
                        2.5 * math.log(2), rel_tol=1e-6)
    # pixels are taken in (b, h, w) order: the second pixel of a 1x2 image has its own target
    two = torch.stack([torch.tensor([5.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 5.0])], -1)
    two = two.view(1, 3, 1, 2)
    good = colorization_ce(two, torch.tensor([[0], [2]]), torch.ones(2, 1))
    bad = colorization_ce(two, torch.tensor([[2], [0]]), torch.ones(2, 1))
    assert float(good) < 0.02 < 5 < float(bad)


def test_ab_regression_loss_hand_computed():
    pred = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[3.0, 0.5], [0.0, 0.0]]).view(1, 2, 1, 2)
    # pixel 1: huber(3) = 3 - 0.5 on a; pixel 2: 0.5 * 0.5^2 on a; mean over 2 pixels
    assert math.isclose(float(ab_regression_loss(pred, target, None, 1.0)), (2.5 + 0.125) / 2)
    w = torch.tensor([2.0, 0.0]).view(1, 1, 2)
    assert math.isclose(float(ab_regression_loss(pred, target, w, 1.0)), 2.5)


# ------------------------------------------------------------------ method


def test_input_and_embed_are_the_grey_image():
    cfg = small_config("colorization")
    model, _ = build_model(cfg, torch.device("cpu"))  # train mode: BN on batch statistics
    g = torch.Generator().manual_seed(0)
    x = normalize(torch.rand(4, 3, 32, 32, generator=g))
    grey = model.grey_input(x)
    g01 = denormalize(grey)
    assert torch.allclose(g01[:, 0], g01[:, 1]) and torch.allclose(g01[:, 1], g01[:, 2])
    lab_x, lab_g = rgb_to_lab(denormalize(x)), rgb_to_lab(g01)
    assert torch.allclose(lab_g[:, 0], lab_x[:, 0], atol=1e-3)
    with torch.no_grad():
        f = model.embed(x)
        scale = float(f.abs().max())
        assert scale > 0.1
        assert torch.allclose(f, model.backbone(grey), atol=1e-5 * scale)
        # colour that keeps the lightness is invisible to the encoder
        assert torch.allclose(model.embed(grey), f, atol=1e-4 * scale)
        assert (model.backbone(x) - f).abs().max() > 0.05 * scale


@pytest.mark.parametrize("loss,rebalance", [("classification", True), ("regression", False)])
def test_trains_streams_metrics_and_previews(loss, rebalance, tmp_path):
    cfg = small_config("colorization", 6, **{"method.loss": loss,
                                              "method.rebalance": rebalance})
    events = list(Trainer(cfg, tmp_path).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 6 and all(math.isfinite(s.loss) and s.loss > 0 for s in steps)
    names = {"ab_error", "pred_chroma", "true_chroma"}
    if loss == "classification":
        names.add("bin_accuracy")
    assert all(names <= set(s.extra) for s in steps)
    assert all(s.extra["true_chroma"] > 10 for s in steps)  # shapes are colourful
    snaps = [e for e in events if isinstance(e, ev.PreviewSnapshot)]
    assert [s.step for s in snaps] == [0, 5, 6]
    for s in snaps:
        assert s.outputs is not None and s.outputs.shape == (4, 32, 32, 3)
        assert s.outputs.dtype == np.uint8 and s.input_title == "grey (L)"
        spread = s.inputs.max(-1).astype(int) - s.inputs.min(-1)
        assert spread.max() == 0  # the input is grey
    if loss == "regression":
        return  # an untrained regressor predicts ab far out of gamut: clamping changes L
    # the colourised output keeps the lightness of the original (where in gamut)
    orig = torch.from_numpy(snaps[-1].originals).permute(0, 3, 1, 2)
    out = torch.from_numpy(snaps[-1].outputs).permute(0, 3, 1, 2)
    lab_o = rgb_to_lab(denormalize(eval_transform(orig, 32)))
    lab_p = rgb_to_lab(denormalize(eval_transform(out, 32)))
    assert (lab_o[:, 0] - lab_p[:, 0]).abs().mean() < 5.0


def test_rebalancing_prior_is_the_running_bin_histogram():
    cfg = small_config("colorization", **{"method.soft_encoding": False})
    model, _ = build_model(cfg, torch.device("cpu"))
    assert "colour_prior" in model.state_dict() and "prior_batches" in model.state_dict()
    aug = ViewAugment(cfg.augment, 32)
    g = torch.Generator().manual_seed(0)
    red = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    red[:, 0] = 255
    model.training_step(red, aug, g)
    p = model.colour_prior
    assert int(model.prior_batches) == 1 and math.isclose(float(p.sum()), 1.0, rel_tol=1e-5)
    ab_red = rgb_to_lab(torch.tensor([1.0, 0, 0]).view(3, 1, 1))[1:].view(2)
    assert torch.equal(model.centres[p.argmax()], torch.round(ab_red / 10) * 10)
    grey = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    out = model.training_step(grey, aug, g)
    assert int(model.prior_batches) == 2 and math.isclose(float(p.max()), 0.5, rel_tol=1e-5)
    assert math.isfinite(float(out.loss.detach()))


def test_colourised_preview_recovers_learnable_colours():
    """Colour that follows from lightness is learnable: on images whose hue is a function
    of L (dark = blue, light = orange), a few steps on one batch give coloured output."""
    cfg = small_config("colorization", **{"optim.lr": 3e-3})
    torch.manual_seed(0)
    model, _ = build_model(cfg, torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    t = torch.rand(16, 1, 32, 32, generator=g)
    t = F.avg_pool2d(t, 5, 1, 2)
    t = (t - t.amin((2, 3), keepdim=True)) / (t.amax((2, 3), keepdim=True) -
                                              t.amin((2, 3), keepdim=True))
    blue, orange = torch.tensor([0.1, 0.2, 0.6]), torch.tensor([1.0, 0.7, 0.3])
    rgb = blue.view(1, 3, 1, 1) * (1 - t) + orange.view(1, 3, 1, 1) * t
    images = (rgb * 255).round().to(torch.uint8)
    aug = ViewAugment(cfg.augment, 32)
    first = None
    for _ in range(30):
        out = model.training_step(images, aug, g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else float(out.metrics["ab_error"])
    assert float(out.metrics["ab_error"]) < 0.6 * first
    model.eval()
    with torch.no_grad():
        p = model.preview(images[:4], torch.Generator())
    lab = rgb_to_lab(p.outputs.float() / 255)
    true = rgb_to_lab(images[:4].float() / 255)
    assert (lab[:, 1:] - true[:, 1:]).norm(dim=1).mean() < 0.6 * true[:, 1:].norm(dim=1).mean()
    assert torch.equal(p.inputs.float() / 255, (rgb_to_grey(images[:4].float() / 255) * 255)
                       .round() / 255)


def test_greyscale_data_is_refused_before_a_run_folder_is_made(tmp_path):
    """On grey images every target is the neutral bin: the run stops at once with a
    message that says so and what to choose instead, and leaves no run folder; a tinted
    copy of the same images (a little colour) is accepted."""
    from engine.data import load_dataset
    from engine.views import draw_views

    digits = load_dataset("digits", 16)
    cfg = small_config("colorization", 2, **{"data.dataset": "digits",
                                              "data.resolution": 16})
    events = list(Trainer(cfg, tmp_path, dataset=digits).run())
    last = events[-1]
    assert isinstance(last, ev.Failed) and last.input_error
    assert "greyscale" in last.message and "another method" in last.message
    assert not any(isinstance(e, ev.RunStarted) for e in events)
    assert not any(tmp_path.iterdir())
    with pytest.raises(UserInputError, match="colorization needs colour images"):
        draw_views(cfg, digits)
    tinted = digits.images.clone()
    tinted[:, 0] = (tinted[:, 0].float() * 0.8).to(torch.uint8)  # less red: a cyan tint
    digits.images = tinted
    build_model(cfg, torch.device("cpu"))[0].attach_source(digits)  # no error
