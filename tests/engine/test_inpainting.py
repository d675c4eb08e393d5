"""Inpainting (context encoder, Pathak et al. 2016): box masks, the mask-only loss, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from engine import events as ev
from engine.corruption import box_masks, box_size
from engine.losses import masked_mse
from engine.methods._reconstruction import upsampling_stages
from engine.methods.inpainting import Inpainting
from engine.train import Trainer
from tests.engine.conftest import small_config

# ------------------------------------------------------------------ masks


def test_central_box_has_the_configured_size_and_position():
    m = box_masks(3, 32, 16, "central")
    assert m.shape == (3, 1, 32, 32) and m.dtype == torch.bool
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:24, 8:24] = True
    assert all(torch.equal(m[i, 0], expected) for i in range(3))
    odd = box_masks(1, 32, 15, "central")[0, 0]
    rows = odd.any(1).nonzero().flatten()
    assert odd.sum() == 225 and rows.min() == 8 and rows.max() == 22
    assert box_size(32, 0.5) == 16 and box_size(128, 0.5) == 64 and box_size(32, 0.01) == 1


def test_random_boxes_stay_inside_and_move():
    g = torch.Generator().manual_seed(0)
    m = box_masks(500, 32, 12, "random", g)
    assert (m.flatten(1).sum(1) == 144).all()  # never clipped by the border
    rows = m[:, 0].any(2).float().argmax(1)
    cols = m[:, 0].any(1).float().argmax(1)
    assert rows.min() == 0 and rows.max() == 20 and cols.min() == 0 and cols.max() == 20
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 200
    # the same generator state gives the same boxes
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(box_masks(8, 32, 12, "random", g1), box_masks(8, 32, 12, "random", g2))
    with pytest.raises(ValueError):
        box_masks(1, 32, 33, "central")


# ------------------------------------------------------------------ loss


def test_masked_mse_hand_computed_and_ignores_unmasked_pixels():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    mask = torch.tensor([[True, False], [False, True]]).view(1, 1, 2, 2)
    assert math.isclose(float(masked_mse(pred, torch.zeros_like(pred), mask)), (1 + 16) / 2)
    # a (1, 1, H, W) mask counts every channel: two channels, (1 + 16 + 4 + 0) / 4
    pred2 = torch.cat([pred, torch.tensor([[2.0, 9.0], [9.0, 0.0]]).view(1, 1, 2, 2)], dim=1)
    assert math.isclose(float(masked_mse(pred2, torch.zeros_like(pred2), mask)), 21 / 4)

    g = torch.Generator().manual_seed(0)
    p = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    t = torch.randn(2, 3, 8, 8, generator=g)
    box = box_masks(2, 8, 4, "central")
    base = masked_mse(p, t, box)
    changed = torch.where(box, p, p + 5 * torch.randn(p.shape, generator=g))
    t_changed = torch.where(box, t, torch.randn(t.shape, generator=g))
    assert torch.allclose(masked_mse(changed, t_changed, box), base)
    base.backward()
    assert (p.grad[~box.expand_as(p)] == 0).all() and p.grad[box.expand_as(p)].abs().sum() > 0
    assert float(masked_mse(p.detach(), t, torch.zeros_like(box))) == 0.0


# ------------------------------------------------------------------ method


def test_decoder_adapts_to_the_feature_map_stride():
    assert upsampling_stages(4, 32) == 3 and upsampling_stages(8, 32) == 2
    assert upsampling_stages(2, 32) == 4 and upsampling_stages(32, 32) == 0

    class Patchy(nn.Module):  # a ViT-like encoder: a stride-4 or odd-sized map
        def __init__(self, stride: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 24, stride, stride)
            self.out_dim = 24

        def feature_map(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean((2, 3))

    cfg = small_config("inpainting")
    for stride in (4, 11):  # 8x8 map (2 stages) and a 3x3 map (3 stages, then a resize)
        model = Inpainting(cfg, Patchy(stride), 24)
        assert model.decode(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_trains_streams_metrics_and_previews(tmp_path):
    events = list(Trainer(small_config("inpainting", 6), tmp_path).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 6 and all(math.isfinite(s.loss) for s in steps)
    for s in steps:
        assert {"masked_mse", "masked_psnr", "fill_psnr"} <= set(s.extra)
        assert math.isclose(s.extra["masked_mse"], s.loss, rel_tol=1e-5)  # mask-only default
        assert 0 < s.extra["masked_psnr"] < 100
    snaps = [e for e in events if isinstance(e, ev.PreviewSnapshot)]
    assert [s.step for s in snaps] == [0, 5, 6]
    for s in snaps:
        assert s.kind == "reconstruction" and s.outputs is not None
        assert s.inputs.shape == s.outputs.shape == s.originals.shape == (4, 32, 32, 3)
        assert s.outputs.dtype == np.uint8
        # the hole is filled with mid grey; outside it the output is the original
        assert (s.inputs[:, 8:24, 8:24] == 128).all()
        outside = np.ones((32, 32), bool)
        outside[8:24, 8:24] = False
        assert np.array_equal(s.outputs[:, outside], s.originals[:, outside])
    assert not np.array_equal(snaps[0].outputs, snaps[-1].outputs)  # it learned something


def test_random_black_masks_and_context_weight(tmp_path):
    cfg = small_config("inpainting", 3, **{"method.mask_mode": "random", "method.fill": "zero",
                                           "method.context_weight": 0.1,
                                           "method.mask_size": 0.25})
    events = list(Trainer(cfg, tmp_path).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert all(s.loss > s.extra["masked_mse"] for s in steps)  # the context term is added
    snap = [e for e in events if isinstance(e, ev.PreviewSnapshot)][-1]
    black = (snap.inputs == 0).all(-1)  # (N, H, W) pixels that are black in the input
    assert (black.reshape(4, -1).sum(1) >= 64).all()  # an 8x8 hole, somewhere
