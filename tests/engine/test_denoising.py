"""Denoising autoencoder (Vincent et al. 2008): the corruptions, the loss choice, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine import events as ev
from engine.augment import ViewAugment
from engine.corruption import gaussian_noise, pixel_masks, psnr
from engine.model import build_model
from engine.train import Trainer
from tests.engine.conftest import small_config


def test_gaussian_noise_has_the_configured_std():
    g = torch.Generator().manual_seed(0)
    x = torch.full((4, 3, 64, 64), 0.5)
    for sigma in (0.05, 0.1):
        noise = gaussian_noise(x, sigma, g) - x
        assert abs(float(noise.mean())) < 0.01 * sigma * 10
        assert math.isclose(float(noise.std()), sigma, rel_tol=0.02)
    # clipped to [0, 1] unless asked otherwise
    big = gaussian_noise(x, 2.0, g)
    assert big.min() == 0 and big.max() == 1
    assert gaussian_noise(x, 2.0, g, clip=False).abs().max() > 1
    # all randomness from the generator
    a = gaussian_noise(x, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, gaussian_noise(x, 0.1, torch.Generator().manual_seed(3)))


def test_masking_noise_zeroes_exactly_the_configured_fraction():
    g = torch.Generator().manual_seed(0)
    for fraction in (0.0, 0.1, 0.25, 0.5, 1.0):
        m = pixel_masks(6, 32, fraction, g)
        assert m.shape == (6, 1, 32, 32) and m.dtype == torch.bool
        assert (m.flatten(1).sum(1) == round(fraction * 1024)).all()
    m = pixel_masks(2, 32, 0.25, g)
    assert not torch.equal(m[0], m[1])  # a fresh draw per image
    with pytest.raises(ValueError):
        pixel_masks(1, 8, 1.5, g)


def test_psnr():
    assert math.isclose(psnr(0.01), 20.0)
    assert math.isclose(psnr(1.0), 0.0)
    assert math.isfinite(psnr(0.0))


def test_method_corruptions_and_the_corrupted_only_loss():
    cfg = small_config("denoising", **{"method.mask_fraction": 0.3})
    model, _ = build_model(cfg, torch.device("cpu"))
    x01 = torch.rand(3, 3, 32, 32) * 0.9 + 0.1  # no pixel is black to begin with
    noisy, mask = model.corrupt(x01, torch.Generator().manual_seed(0))
    assert mask is not None
    black = (noisy == 0).all(1, keepdim=True)
    assert torch.equal(black, mask) and (black.flatten(1).sum(1) == round(0.3 * 1024)).all()
    assert torch.equal(noisy[~mask.expand_as(noisy)], x01[~mask.expand_as(x01)])

    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    aug = ViewAugment(cfg.augment, 32)
    out_all = model.training_step(images, aug, torch.Generator().manual_seed(1))
    loss_all = float(out_all.loss.detach())
    assert math.isclose(loss_all, float(out_all.metrics["mse"]), rel_tol=1e-6)
    cfg.set("method.loss_on", "corrupted")
    torch.manual_seed(0)
    model2, _ = build_model(cfg, torch.device("cpu"))
    model2.load_state_dict(model.state_dict())
    out_c = model2.training_step(images, aug, torch.Generator().manual_seed(1))
    loss_c = float(out_c.loss.detach())
    assert math.isclose(loss_c, float(out_c.metrics["masked_mse"]), rel_tol=1e-6)
    assert math.isclose(float(out_c.metrics["mse"]), float(out_all.metrics["mse"]), rel_tol=1e-6)


@pytest.mark.parametrize("noise", ["masking", "gaussian"])
def test_trains_streams_metrics_and_previews(noise, tmp_path):
    events = list(Trainer(small_config("denoising", 6, **{"method.noise": noise}), tmp_path)
                  .run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 6 and all(math.isfinite(s.loss) for s in steps)
    names = {"mse", "psnr", "input_psnr"} | ({"masked_mse"} if noise == "masking" else set())
    assert all(names <= set(s.extra) for s in steps)
    snaps = [e for e in events if isinstance(e, ev.PreviewSnapshot)]
    assert [s.step for s in snaps] == [0, 5, 6]
    for s in snaps:
        assert s.outputs is not None and s.outputs.shape == (4, 32, 32, 3)
        assert s.outputs.dtype == np.uint8 and s.output_title == "denoised"
    assert np.array_equal(snaps[0].inputs, snaps[-1].inputs)  # the same noise every time
    if noise == "masking":  # a quarter of the input pixels are black
        black = (snaps[0].inputs == 0).all(-1).reshape(4, -1).sum(1)
        assert (black >= 256).all()
    else:
        assert not np.array_equal(snaps[0].inputs, snaps[0].originals)
