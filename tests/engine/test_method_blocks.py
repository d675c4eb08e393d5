"""The method building blocks: two views, EMA targets, cross-field validation."""

from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from engine.methods._joint import MomentumMethod, TwoViewMethod
from engine.model import build_model
from engine.presets import default_config
from engine.registry import get_method_info

CPU = torch.device("cpu")


@pytest.mark.parametrize(("method", "settings", "message"), [
    ("dino", {"method.local_crop_min_scale": 0.9}, "local_crop_min_scale must not exceed"),
    ("mae", {"backbone.name": "small_cnn"}, "MAE needs the Vision Transformer"),
    ("mae", {"method.decoder_dim": 66}, "multiple of 4"),
    ("jigsaw", {"method.grid": 2, "method.n_permutations": 1000}, "orders of a 2x2 grid"),
])
def test_cross_field_rules_are_rejected_by_validate_before_any_model_exists(
        method, settings, message):
    """``Config.validate`` (what the form calls before Start) applies each method's
    ``MethodConfig.validate``, so these never reach a constructor."""
    cfg = default_config(method)
    for key, value in settings.items():
        cfg.set(key, value)  # each field alone is in range
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_defaults_of_every_method_pass_validation():
    from engine.registry import available_methods

    for info in available_methods():
        default_config(info.name).validate()


@pytest.mark.parametrize("method", ["byol", "moco", "dino"])
def test_momentum_methods_declare_their_targets_and_the_base_applies_the_ema(method):
    cfg = default_config(method)
    cfg.set("backbone.width", 8)
    model, _ = build_model(cfg, CPU)
    assert isinstance(model, MomentumMethod)
    pairs = model._momentum_pairs
    assert len(pairs) == 2 and pairs[0][0] is model.backbone
    children = list(model.children())
    for online, target in pairs:
        assert any(c is target for c in children)  # registered: saved in checkpoints
        assert all(not p.requires_grad for p in target.parameters())
        with torch.no_grad():  # move the online network away from its target
            for p in online.parameters():
                p.add_(1.0)
    before = [[p.clone() for p in t.parameters()] for _, t in pairs]
    m = model.momentum_at(0, 100)
    out = model.after_step(0, 100)
    assert out["target_momentum"] == pytest.approx(m)
    for (online, target), saved in zip(pairs, before, strict=True):
        for b, t, o in zip(saved, target.parameters(), online.parameters(), strict=True):
            torch.testing.assert_close(t, m * b + (1 - m) * o)


def test_momentum_schedules():
    byol, _ = build_model(default_config("byol"), CPU)
    assert byol.momentum_at(0, 100) == pytest.approx(byol.base_momentum)
    assert byol.momentum_at(100, 100) == pytest.approx(1.0)  # cosine rise to 1
    moco, _ = build_model(default_config("moco"), CPU)
    assert moco.momentum_at(0, 100) == moco.momentum_at(99, 100) == moco.momentum
    cfg = default_config("byol")
    cfg.set("method.base_momentum", 0.0)
    no_ema, _ = build_model(cfg, CPU)
    assert no_ema.momentum_at(50, 100) == 0.0  # BYOL's collapse switch: no EMA at all


def test_two_views_are_independent_augmentations_stacked():
    cfg = default_config("simclr")
    model, _ = build_model(cfg, CPU)
    assert isinstance(model, TwoViewMethod)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    views = model.two_views(images, model.train_augment(), torch.Generator().manual_seed(0))
    assert views.shape == (8, 3, 32, 32)
    assert not torch.allclose(views[:4], views[4:])


def test_contrastive_and_non_contrastive_methods_share_the_two_view_base():
    for name in ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "triplet",
                 "dino"):
        assert issubclass(get_method_info(name).cls, TwoViewMethod), name
