"""The small ViT backbone: shapes, encoding a subset of patches, config errors, and another
method (SimCLR) training on it."""

from __future__ import annotations

import math

import pytest
import torch

from engine import events as ev
from engine.backbones import ViT, build_backbone, feature_map, sincos_pos_embed_2d
from engine.errors import ConfigError
from engine.model import build_model
from engine.presets import default_config
from engine.train import Trainer
from tests.engine.conftest import small_config

TINY = {"backbone.name": "vit", "backbone.vit_dim": 32, "backbone.vit_depth": 2,
        "backbone.vit_heads": 2}


def tiny_vit() -> ViT:
    torch.manual_seed(0)
    return ViT(32, patch_size=4, dim=32, depth=2, heads=2).eval()


def test_output_and_feature_map_shapes():
    net, dim = build_backbone("vit", 32, 16, patch_size=8, vit_dim=48, vit_depth=1,
                              vit_heads=3)
    assert dim == 48 and net.num_patches == 16
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 48)
    assert net.forward_tokens(x).shape == (2, 16, 48)
    fmap = feature_map(net, x)
    assert fmap.shape == (2, 48, 4, 4)
    # the map is the tokens in row-major patch order: token 1 is row 0, column 1
    assert torch.allclose(fmap[:, :, 0, 1], net.forward_tokens(x)[:, 1])
    # the pooled feature is the mean of the tokens
    assert torch.allclose(net(x), fmap.mean(dim=(2, 3)), atol=1e-6)


def test_identity_subset_equals_full_forward():
    net = tiny_vit()
    x = torch.randn(3, 3, 32, 32)
    ids = torch.arange(64).expand(3, -1)
    with torch.no_grad():
        assert torch.allclose(net.forward_tokens(x, ids), net.forward_tokens(x), atol=1e-6)
        assert torch.allclose(net.forward_tokens(x, ids).mean(1), net(x), atol=1e-6)


def test_tokens_follow_the_order_of_ids_keep():
    # attention is permutation-equivariant and positions are added before the gather, so
    # shuffling the kept ids shuffles the output tokens and changes nothing else
    net = tiny_vit()
    x = torch.randn(2, 3, 32, 32)
    g = torch.Generator().manual_seed(1)
    perm = torch.stack([torch.randperm(64, generator=g) for _ in range(2)])
    with torch.no_grad():
        full = net.forward_tokens(x)
        shuffled = net.forward_tokens(x, perm)
    assert torch.allclose(shuffled, torch.gather(full, 1, perm[..., None].expand(-1, -1, 32)),
                          atol=1e-5)


def test_encoding_a_subset_sees_only_those_patches():
    net = tiny_vit()
    x = torch.randn(1, 3, 32, 32)
    keep = torch.tensor([[0, 9, 27, 63]])  # patches (0,0), (1,1), (3,3), (7,7)
    y = x.clone()
    y[..., 4:8, 0:4] += 5.0  # patch 8 (row 1, column 0): not kept
    with torch.no_grad():
        a, b = net.forward_tokens(x, keep), net.forward_tokens(y, keep)
        assert torch.equal(a, b)
        y[..., 4:8, 4:8] += 5.0  # patch 9: kept, so the output changes
        assert not torch.allclose(a, net.forward_tokens(y, keep))
        # and the subset is not the full image's tokens at those places (less context)
        assert not torch.allclose(a, net.forward_tokens(x)[:, keep[0]])


def test_sincos_position_embeddings():
    pe = sincos_pos_embed_2d(16, 4)
    assert pe.shape == (16, 16) and pe.abs().max() <= 1.0
    # first half encodes the column, second half the row (as MAE's code)
    assert torch.equal(pe[1, :8], pe[5, :8]) and not torch.equal(pe[1, 8:], pe[5, 8:])
    assert torch.equal(pe[4, 8:], pe[5, 8:]) and not torch.equal(pe[4, :8], pe[5, :8])
    assert torch.equal(pe[0], torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1] * 2))
    # every position is distinct
    assert torch.cdist(pe, pe).add(torch.eye(16)).min() > 0.1
    # fixed: not a parameter, not in the state_dict
    net = tiny_vit()
    assert "pos_embed" not in dict(net.named_parameters())
    assert "pos_embed" not in net.state_dict()


def test_patch_size_must_divide_resolution():
    with pytest.raises(ConfigError, match=r"backbone\.patch_size = 5 .*data\.resolution = 32"):
        build_backbone("vit", 32, 16, patch_size=5)
    cfg = default_config("simclr")
    for k, v in TINY.items():
        cfg.set(k, v)
    cfg.set("data.resolution", 30)
    with pytest.raises(ConfigError, match=r"backbone\.patch_size = 4 .*30"):
        build_model(cfg, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"backbone\.vit_heads = 3"):
        build_backbone("vit", 32, 16, vit_dim=32, vit_heads=3)
    with pytest.raises(ConfigError, match=r"backbone\.vit_dim = 34"):
        build_backbone("vit", 32, 16, vit_dim=34, vit_heads=2)


def test_vit_is_a_backbone_choice_with_ranges():
    cfg = default_config("simclr")
    cfg.set("backbone.name", "vit")
    for key in ("backbone.patch_size", "backbone.vit_dim", "backbone.vit_depth",
                "backbone.vit_heads", "backbone.vit_mlp_ratio"):
        spec = cfg.spec(key)
        assert spec.advanced and spec.help and spec.min is not None and spec.max is not None
    with pytest.raises(ConfigError, match="backbone.vit_depth = 0 is out of range"):
        cfg.set("backbone.vit_depth", 0)


def test_simclr_trains_with_the_vit(tmp_path):
    cfg = small_config("simclr", 3, **{**TINY, "monitor.every_steps": 3})
    events = list(Trainer(cfg, tmp_path).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.backbone == "vit" and started.feature_dim == 32
    losses = [e.loss for e in events if isinstance(e, ev.StepMetrics)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    report = [e for e in events if isinstance(e, ev.MonitorReport)][-1]
    assert report.knn_accuracy is not None and 0 <= report.knn_accuracy <= 1
    assert report.backbone_dim == 32
