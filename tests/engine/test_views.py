"""The views panel's engine half: every method shows what its training step feeds the
network, made by the step's own functions (the same pixels and tokens, not a look-alike).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.augment import to_uint8
from engine.data import load_configured
from engine.model import build_model
from engine.registry import available_methods, get_method_info
from engine.views import SAMPLES, draw_views, fixed_samples
from tests.engine.conftest import small_config
from tests.engine.test_text_methods import corpus, tiny

METHODS = [m.name for m in available_methods()]


def source_for(method: str, tmp_path) -> tuple[Any, Any]:
    """A small config and dataset source of the kind ``method`` trains on."""
    info = get_method_info(method)
    if info.modality == "text":
        return tiny(method, 24), corpus(40, 24)
    cfg = small_config(method, **{"data.shapes_count": 100})
    if info.modality == "paired":
        cfg.set("data.seq_len", 24)
    return cfg, load_configured(cfg.data, tmp_path / "cache", modality=info.modality)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_shows_what_it_trains_on(method, tmp_path):
    cfg, source = source_for(method, tmp_path)
    d = draw_views(cfg, source)
    n = len(d.names)
    assert n == SAMPLES and d.views, f"{method} shows nothing"
    for v in d.views:
        assert v.title and v.caption, (method, v)
        if v.images is not None:
            assert v.images.dtype == torch.uint8 and v.images.shape[:2] == (n, 3), v.title
            assert v.images.shape[-1] >= 4
        else:
            assert len(v.texts) == n and all(isinstance(t, str) for t in v.texts), v.title
    # the same draw twice is the same picture; another draw differs (every method here
    # draws something at random: crops, masks, rotations, tiles, noise or token masks)
    again = draw_views(cfg, source)
    other = draw_views(cfg, source, draw=1)
    same = all(_equal(a, b) for a, b in zip(d.views, again.views, strict=True))
    assert same, f"{method}: one draw gave two pictures"
    if method not in ("gpt", "simcse"):  # their inputs are the rows themselves
        assert not all(_equal(a, b) for a, b in zip(d.views, other.views, strict=True)), (
            f"{method}: a new draw changed nothing")


def _equal(a: Any, b: Any) -> bool:
    if a.images is not None:
        return b.images is not None and torch.equal(a.images, b.images)
    return a.texts == b.texts


def backbone_inputs(model: torch.nn.Module, samples: Any, seed: int) -> list[Any]:
    """What the backbone received in one training step with a generator seeded ``seed``."""
    seen: list[Any] = []
    decode = getattr(model, "decode", None)
    if decode is not None:  # reconstruction methods reach the backbone's feature map
        def recording(x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return decode(x)
        model.decode = recording
    hook = model.backbone.register_forward_pre_hook(
        lambda _m, args: None if decode is not None else seen.append(args[0].detach().clone()))
    try:
        augment = model.train_augment()
        model.training_step(samples, augment, torch.Generator().manual_seed(seed))
    finally:
        hook.remove()
    return seen


#: method -> the views (by title) that, stacked, are the backbone's first input
FED_TO_THE_BACKBONE = {
    "simclr": ["view 1", "view 2"], "byol": ["view 1", "view 2"],
    "barlow_twins": ["view 1", "view 2"], "vicreg": ["view 1", "view 2"],
    "simsiam": ["view 1", "view 2"], "moco": ["view 1", "view 2"],
    "triplet": ["view 1", "view 2"], "dino": ["global crop 1", "global crop 2"],
    "rotation": ["rotated 0°", "rotated 90°", "rotated 180°", "rotated 270°"],
    "inpainting": ["masked input"], "denoising": ["noisy input"],
    "colorization": ["grey input"],
}


@pytest.mark.parametrize("method", sorted(FED_TO_THE_BACKBONE))
def test_the_views_are_the_pixels_the_step_feeds_the_backbone(method, tmp_path):
    """Same seed, same pixels: the panel shows the step's own inputs, not a
    re-implementation that could drift from it."""
    cfg, source = source_for(method, tmp_path)
    samples, _ = fixed_samples(source, 4)
    torch.manual_seed(0)
    model, _ = build_model(cfg, torch.device("cpu"))
    model.train()
    fed = backbone_inputs(model, samples, seed=5)[0]
    views = {v.title: v for v in model.training_inputs(samples, torch.Generator().manual_seed(5))}
    shown = torch.cat([views[t].images for t in FED_TO_THE_BACKBONE[method]])
    assert torch.equal(to_uint8(fed), shown)


def test_dino_shows_its_local_crops_at_their_own_size(tmp_path):
    cfg, source = source_for("dino", tmp_path)
    cfg.set("method.local_crops", 6)
    d = draw_views(cfg, source)
    local = [v for v in d.views if v.title.startswith("local crop")]
    assert len(local) == 4  # at most LOCAL_CROPS_SHOWN of the six
    assert local[0].images.shape[-1] == cfg.data.resolution // 2


def test_mae_hides_the_configured_share_of_patches(tmp_path):
    cfg, source = source_for("mae", tmp_path)
    for ratio in (0.25, 0.75):
        cfg.set("method.mask_ratio", ratio)
        views = {v.title: v for v in draw_views(cfg, source).views}
        visible, target = views["visible patches"].images, views["target"].images
        p = cfg.backbone.patch_size
        same = (visible == target).reshape(*visible.shape[:2], visible.shape[2] // p, p,
                                           visible.shape[3] // p, p).all(1).all(2).all(-1)
        kept = same.float().mean().item()  # patches shown unchanged (black ones differ)
        assert abs(kept - (1 - ratio)) < 0.15, (ratio, kept)


def test_a_changed_setting_changes_the_views(tmp_path):
    """What the panel redraws on: a stronger crop, another rotation mode, a mask rate."""
    cfg, source = source_for("simclr", tmp_path)
    before = draw_views(cfg, source).views[0].images
    cfg.set("augment.crop_min_scale", 0.9)
    assert not torch.equal(draw_views(cfg, source).views[0].images, before)
    cfg, source = source_for("rotation", tmp_path)
    assert len(draw_views(cfg, source).views) == 4
    cfg.set("method.all_rotations", False)
    assert [v.title for v in draw_views(cfg, source).views] == ["rotated"]


def test_masked_language_model_marks_what_it_must_recover():
    cfg, source = tiny("mlm", 24), corpus(40, 24)
    cfg.set("method.mask_prob", 0.5)
    views = {v.title: v for v in draw_views(cfg, source).views}
    masked = views["masked input"].texts
    assert any("⟦[MASK]⟧" in t for t in masked)
    assert sum(t.count("⟦") for t in views["original"].texts) == sum(
        t.count("⟦") for t in masked)
    gpt = {v.title: v for v in draw_views(tiny("gpt", 24), source).views}
    assert gpt["input"].texts[0][1:] == gpt["target"].texts[0][:-1]  # one token later
    simcse = tiny("simcse", 24)
    simcse.set("method.dropout", 0.0)
    views2 = draw_views(simcse, source).views
    assert "nothing to tell apart" in views2[1].caption


def test_fixed_samples_are_spread_and_stable(tmp_path):
    _, source = source_for("simclr", tmp_path)
    a, names = fixed_samples(source)
    b, _ = fixed_samples(source)
    assert torch.equal(a, b) and len(set(names)) == SAMPLES
    _, labelled = fixed_samples(source, 12)  # the shapes have 6 classes: each shows twice
    idx = [source.files.index(name) for name in labelled]
    assert sorted(source.labels[idx].tolist()) == sorted(list(range(6)) * 2)
