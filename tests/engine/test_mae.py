"""MAE: patchify, random masking, the mask-only loss, the preview, and training steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine import events as ev
from engine.augment import ViewAugment, eval_transform
from engine.config import AugmentConfig
from engine.errors import ConfigError
from engine.losses import mae_loss, mae_targets
from engine.methods.mae import MAE, num_kept, patchify, random_masking, unpatchify
from engine.model import build_model
from engine.train import Trainer
from tests.engine.conftest import small_config

AUG = ViewAugment(AugmentConfig(), 32)  # unused by MAE, which makes crop-and-flip views

#: A one-block ViT encoder and decoder, and the monitor every 2 steps (of 4).
TINY_VIT = {"optim.warmup_steps": 1, "monitor.every_steps": 2, "backbone.vit_dim": 32,
            "backbone.vit_depth": 1, "backbone.vit_heads": 2, "method.decoder_dim": 32,
            "method.decoder_depth": 1, "method.decoder_heads": 2}


def tiny_model(**overrides) -> MAE:
    torch.manual_seed(0)
    model, name = build_model(small_config("mae", 4, **{**TINY_VIT, **overrides}),
                              torch.device("cpu"))
    assert name == "vit" and isinstance(model, MAE)
    return model


# ------------------------------------------------------------------ patches and masks


def test_patchify_unpatchify_round_trip_and_layout():
    x = torch.randn(2, 3, 12, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 9, 48)
    assert torch.equal(unpatchify(p, 4), x)
    # patch 5 is row 1, column 2, its values ordered (row, column, channel)
    assert torch.equal(p[:, 5], x[:, :, 4:8, 8:12].permute(0, 2, 3, 1).reshape(2, 48))
    y = torch.randn(2, 27, 4 * 4 * 3)[:, :25]
    assert torch.equal(patchify(unpatchify(y, 4), 4), y)
    with pytest.raises(ValueError):
        patchify(torch.zeros(1, 3, 10, 10), 4)


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.9, 0.1])
def test_random_masking_keeps_the_right_patches(ratio):
    n_patches = 64
    g = torch.Generator().manual_seed(0)
    ids_keep, mask, ids_restore = random_masking(5, n_patches, ratio, g, "cpu")
    keep = round(n_patches * (1 - ratio))
    assert num_kept(n_patches, ratio) == keep
    assert ids_keep.shape == (5, keep) and mask.shape == (5, n_patches)
    # exactly the removed patches are 1
    assert torch.equal(mask.sum(1), torch.full((5,), float(n_patches - keep)))
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask.gather(1, ids_keep) == 0).all()
    for row in range(5):
        kept = set(ids_keep[row].tolist())
        assert len(kept) == keep
        assert kept == set(torch.nonzero(mask[row] == 0).flatten().tolist())
    # ids_restore undoes the shuffle: [kept, removed] tokens gathered back into place
    tokens = torch.arange(n_patches).expand(5, -1)
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    assert torch.equal(ids_shuffle[:, :keep], ids_keep)
    shuffled = torch.gather(tokens, 1, ids_shuffle)
    assert torch.equal(torch.gather(shuffled, 1, ids_restore), tokens)
    # masks differ between images and between draws
    assert not torch.equal(mask[0], mask[1])
    assert not torch.equal(mask, random_masking(5, n_patches, ratio, g, "cpu")[1])


def test_masking_is_reproducible_from_the_generator_only():
    a = random_masking(3, 16, 0.75, torch.Generator().manual_seed(4), "cpu")
    torch.manual_seed(123)  # the global RNG must not matter
    b = random_masking(3, 16, 0.75, torch.Generator().manual_seed(4), "cpu")
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert num_kept(4, 0.95) == 1  # never an empty encoder input


# ------------------------------------------------------------------------------ loss


def test_mae_loss_hand_computed():
    # two patches of two values; patch 0 masked: ((1-0)^2 + (3-1)^2) / 2 = 2.5
    pred = torch.tensor([[[1.0, 3.0], [10.0, 10.0]]])
    target = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0]])
    assert math.isclose(float(mae_loss(pred, target, mask)), 2.5)
    assert math.isclose(float(mae_loss(pred, target, 1 - mask)), 100.0)
    # averaged over masked patches of the whole batch, not per image
    pred2 = torch.cat([pred, torch.tensor([[[2.0, 2.0], [0.0, 0.0]]])])
    target2 = torch.cat([target, torch.zeros(1, 2, 2)])
    mask2 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert math.isclose(float(mae_loss(pred2, target2, mask2)), (2.5 + 4.0 + 0.0) / 3,
                        rel_tol=1e-6)
    assert float(mae_loss(pred, target, torch.zeros(1, 2))) == 0.0


def test_mae_loss_ignores_visible_patches():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 16, 12, generator=g, requires_grad=True)
    target = torch.randn(4, 16, 12, generator=g)
    _, mask, _ = random_masking(4, 16, 0.75, g, "cpu")
    loss = mae_loss(pred, target, mask)
    changed = torch.where(mask[..., None].bool(), pred, pred + 7.0)
    assert torch.equal(mae_loss(changed, target, mask), loss)
    loss.backward()
    assert (pred.grad[mask == 0] == 0).all() and (pred.grad[mask == 1] != 0).any()


def test_norm_pix_targets_are_standardised_per_patch():
    g = torch.Generator().manual_seed(0)
    patches = torch.rand(3, 10, 48, generator=g) * 4 + 2
    t = mae_targets(patches, norm_pix=True)
    assert torch.allclose(t.mean(-1), torch.zeros(3, 10), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(3, 10), atol=1e-4)
    assert torch.equal(mae_targets(patches, norm_pix=False), patches)
    flat = mae_targets(torch.full((1, 1, 48), 0.3), norm_pix=True)  # no division by zero
    assert torch.isfinite(flat).all() and flat.abs().max() < 1e-3


# ---------------------------------------------------------------------------- model


def test_mae_needs_the_vit_backbone(tmp_path):
    for name in ("small_cnn", "resnet18"):
        cfg = small_config("mae", 4, **TINY_VIT)
        cfg.set("backbone.name", name)
        with pytest.raises(ConfigError, match=r"backbone\.name = '" + name + r"'.*\"vit\""):
            build_model(cfg, torch.device("cpu"))
    cfg = small_config("mae", 4, **TINY_VIT)
    cfg.set("backbone.name", "small_cnn")
    # rejected by the config's own validation: the form refuses it before Start
    with pytest.raises(ConfigError, match=r"backbone\.name = 'small_cnn'"):
        cfg.validate()
    with pytest.raises(ConfigError, match="MAE needs the Vision Transformer"):
        Trainer(cfg, tmp_path)


def test_decoder_dim_must_fit_its_heads():
    with pytest.raises(ConfigError, match=r"method\.decoder_dim = 30"):
        tiny_model(**{"method.decoder_dim": 30})


def test_training_step_masks_and_uses_only_the_generator():
    model = tiny_model()
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(1)
    a = model.training_step(images, AUG, torch.Generator().manual_seed(3))
    torch.manual_seed(2)
    b = model.training_step(images, AUG, torch.Generator().manual_seed(3))
    assert torch.equal(a.loss, b.loss)
    assert set(a.metrics) == {"masked_mse", "visible_mse"}
    loss = float(a.loss.detach())
    assert math.isfinite(loss) and float(a.metrics["masked_mse"]) == loss
    a.loss.backward()
    # the decoder, its mask token and the encoder all learn
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0
    assert model.backbone.patch_embed.weight.grad.abs().sum() > 0


def test_embed_is_the_backbone_on_the_whole_image():
    model = tiny_model().eval()
    x = eval_transform(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), 32)
    with torch.no_grad():
        assert torch.equal(model.embed(x), model.backbone(x))
    assert model.embed(x).shape == (2, 32)


def test_overfits_one_batch():
    model = tiny_model(**{"method.mask_ratio": 0.5})
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    images[:, :, 8:24, 8:24] = 255  # a white square on noise: learnable structure
    losses = []
    for step in range(40):
        out = model.training_step(images, AUG, torch.Generator().manual_seed(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


@pytest.mark.parametrize("norm_pix", [False, True])
def test_preview_shows_visible_patches_and_pastes_them_back(norm_pix):
    model = tiny_model(**{"method.norm_pix_loss": norm_pix}).eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        p = model.preview(images, torch.Generator().manual_seed(5))
    _, mask, _ = random_masking(3, 64, 0.75, torch.Generator().manual_seed(5), "cpu")
    assert p.kind == "reconstruction" and p.input_title == "visible patches"
    assert p.output_title == "reconstruction + visible"
    assert p.inputs.dtype == torch.uint8 and p.outputs.shape == images.shape
    removed = mask.bool()
    orig, inp, out = (patchify(t.float(), 4) for t in (images, p.inputs, p.outputs))
    assert torch.equal(out[~removed], orig[~removed])  # visible patches exactly
    assert torch.equal(inp[~removed], orig[~removed])
    assert (inp[removed] == 0).all()  # removed patches blacked out
    assert not torch.equal(out[removed], orig[removed])  # the rest is predicted


def test_few_training_steps_stream_metrics_and_previews(tmp_path):
    events = list(Trainer(small_config("mae", 4, **TINY_VIT), tmp_path).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 4 and all(math.isfinite(e.loss) for e in steps)
    for e in steps:
        assert {"masked_mse", "visible_mse"} <= set(e.extra)
        assert all(math.isfinite(v) for v in e.extra.values())
    snaps = [e for e in events if isinstance(e, ev.PreviewSnapshot)]
    assert [s.step for s in snaps] == [0, 2, 4]
    keep = num_kept(64, 0.75)
    for s in snaps:
        assert s.kind == "reconstruction" and s.outputs is not None
        assert s.originals.shape == s.inputs.shape == s.outputs.shape == (4, 32, 32, 3)
        # visible patches: shown in the input and pasted back exactly in the output
        orig, inp, out = (patchify(torch.from_numpy(a).permute(0, 3, 1, 2).float(), 4)
                          for a in (s.originals, s.inputs, s.outputs))
        shown = (inp == orig).all(-1)
        assert (shown.sum(1) >= keep).all()
        assert (inp[~shown] == 0).all()
        assert torch.equal(out[shown], orig[shown])
    # the same masks at every snapshot
    assert np.array_equal(snaps[0].inputs, snaps[-1].inputs)
