"""CLIP (Radford et al. 2021): the symmetric InfoNCE by hand, its shards, the learned and
clamped temperature, retrieval recall and zero-shot accuracy on constructed embeddings
with known answers, and the method's step and monitor hooks on a stand-in paired batch.

The paired source (``engine.data.paired.Pairs``) is built elsewhere; the method reads
only ``batch.images`` and ``batch.tokens``, so :class:`StandInPairs` stands in for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from engine.config import Config
from engine.data.tokens import PAD
from engine.losses import clip_loss, clip_loss_shard
from engine.methods.clip import CLIP, MAX_LOGIT_SCALE
from engine.model import build_model, build_optimizer
from engine.presets import default_config
from engine.retrieval import (
    DEFAULT_TEMPLATES,
    chance_recall,
    prompts,
    recall_at_k,
    zero_shot_accuracy,
    zero_shot_classifier,
)


@dataclass
class StandInPairs:
    """What the method reads of a batch of the paired source: uint8 images ``(B, 3, R,
    R)`` and int64 token rows ``(B, L)`` right-padded with [PAD]."""

    images: torch.Tensor
    tokens: torch.Tensor

    def __getitem__(self, index: object) -> StandInPairs:
        return StandInPairs(self.images[index], self.tokens[index])  # type: ignore[index]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> torch.Size:
        return self.images.shape

    def to(self, device: torch.device | str) -> StandInPairs:
        return StandInPairs(self.images.to(device), self.tokens.to(device))


def stand_in_pairs(n: int, resolution: int, seq_len: int, seed: int = 0) -> StandInPairs:
    """Random images and byte captions of 3 .. seq_len real tokens."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, resolution, resolution), generator=g,
                           dtype=torch.uint8)
    ids = torch.randint(4, 260, (n, seq_len), generator=g)
    real = torch.randint(3, seq_len + 1, (n, 1), generator=g)
    return StandInPairs(images, ids.masked_fill(torch.arange(seq_len)[None] >= real, PAD))


#: a tiny CLIP: 16 px, a 4-channel CNN, a 1-block text tower of width 32
TINY = {"data.resolution": 16, "backbone.width": 4, "backbone.name": "small_cnn",
        "data.seq_len": 12, "method.dim": 32, "method.depth": 1, "method.heads": 2,
        "method.embed_dim": 16}


def tiny(**overrides: object) -> Config:
    cfg = default_config("clip")
    for key, value in {**TINY, **overrides}.items():
        cfg.set(key, value)
    cfg.validate()
    return cfg


def tiny_model(**overrides: object) -> CLIP:
    torch.manual_seed(0)
    model, _ = build_model(tiny(**overrides), torch.device("cpu"))
    assert isinstance(model, CLIP)
    return model


# ------------------------------------------------------------------------------ the loss


def loss_by_hand(img: torch.Tensor, txt: torch.Tensor, scale: float) -> float:
    """Both directions' cross-entropy written out with explicit sums."""
    a = [[float(x) for x in F.normalize(r, dim=0)] for r in img]
    b = [[float(x) for x in F.normalize(r, dim=0)] for r in txt]
    n = len(a)
    s = [[scale * sum(x * y for x, y in zip(a[i], b[j], strict=True)) for j in range(n)]
         for i in range(n)]
    rows = sum(-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(n)))
               for i in range(n)) / n
    cols = sum(-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(n)))
               for j in range(n)) / n
    return (rows + cols) / 2


def test_clip_loss_matches_the_cross_entropies_written_out():
    img = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    txt = torch.tensor([[3.0, 1.0], [-1.0, 1.0], [0.5, 0.2]])
    for scale in (1.0, 2.5, 14.3):
        got = float(clip_loss(img, txt, torch.tensor(scale)))
        assert math.isclose(got, loss_by_hand(img, txt, scale), rel_tol=1e-5), scale
    # two orthogonal pairs matched exactly at scale 1: -log(e / (e + 1)) both ways
    eye = torch.eye(2)
    assert math.isclose(float(clip_loss(eye, eye, 1.0)), math.log((math.e + 1) / math.e),
                        rel_tol=1e-6)


def test_clip_loss_is_symmetric_and_ignores_norms_and_order():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    base = clip_loss(img, txt, 7.0)
    assert torch.allclose(base, clip_loss(txt, img, 7.0), atol=1e-6)
    assert torch.allclose(base, clip_loss(3 * img, 0.2 * txt, 7.0), atol=1e-6)
    perm = torch.randperm(8, generator=g)
    assert torch.allclose(base, clip_loss(img[perm], txt[perm], 7.0), atol=1e-6)
    # matched pairs score lower than random ones
    assert clip_loss(img, img + 0.01 * txt, 7.0) < base


def test_a_flat_temperature_leaves_the_loss_at_log_batch_whatever_the_embeddings():
    """The collapse switch: at temperature 10 every logit lies in [-0.1, 0.1], so each
    cross-entropy is within 0.2 of log N, matched pairs or not."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(16, 8, generator=g)
    for txt in (z, torch.randn(16, 8, generator=g)):
        assert abs(float(clip_loss(z, txt, 1 / 10.0)) - math.log(16)) <= 0.2


@pytest.mark.parametrize("shards", [2, 4])
def test_shards_average_to_the_whole_batch_loss_and_gradient(shards):
    """What each process computes on the gathered embeddings (its own rows against the
    whole batch): the mean over the shards is the whole-batch loss, and so is its
    gradient with respect to every embedding and to the logit scale."""
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    img, txt = a.clone().requires_grad_(), b.clone().requires_grad_()
    scale = torch.tensor(5.0, requires_grad=True)
    whole = clip_loss(img, txt, scale)
    whole.backward()
    want = img.grad.clone(), txt.grad.clone(), scale.grad.clone()
    img.grad = txt.grad = scale.grad = None
    n = 8 // shards
    parts = torch.stack([clip_loss_shard(img, txt, i * n, n, scale) for i in range(shards)])
    parts.mean().backward()
    assert torch.allclose(parts.mean(), whole, atol=1e-6)
    for got, ref in zip((img.grad, txt.grad, scale.grad), want, strict=True):
        assert torch.allclose(got, ref, atol=1e-6)
    # one shard alone is not the whole-batch loss (the gather matters)
    assert not torch.allclose(parts[0], whole, atol=1e-3)


# ---------------------------------------------------------------------- the temperature


def test_learned_temperature_starts_at_007_and_is_clipped_at_100():
    model = tiny_model()
    assert model.logit_scale is not None
    assert math.isclose(float(model.scale().detach()), 1 / 0.07, rel_tol=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) = 22026
    assert float(model.scale().detach()) == MAX_LOGIT_SCALE
    model.after_step(0, 10)  # the parameter itself is kept in [0, log 100]
    assert math.isclose(float(model.logit_scale.detach()), math.log(MAX_LOGIT_SCALE), rel_tol=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(-3.0)
    model.after_step(0, 10)
    assert float(model.logit_scale.detach()) == 0.0


def test_learned_temperature_gets_a_gradient_and_a_fixed_one_has_no_parameter():
    batch = stand_in_pairs(8, 16, 12)
    model = tiny_model()
    out = model.training_step(batch, model.train_augment(), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert model.logit_scale is not None and model.logit_scale.grad is not None
    assert float(model.logit_scale.grad) != 0.0
    assert math.isclose(float(out.metrics["temperature"]), 0.07, rel_tol=1e-5)

    fixed = tiny_model(**{"method.temperature": 0.5})
    assert fixed.logit_scale is None
    assert not any("logit_scale" in name for name, _ in fixed.named_parameters())
    assert math.isclose(float(fixed.scale()), 2.0)
    out = fixed.training_step(batch, fixed.train_augment(), torch.Generator().manual_seed(0))
    assert math.isclose(float(out.metrics["temperature"]), 0.5, rel_tol=1e-6)


# ------------------------------------------------------------------------- retrieval


def test_recall_of_the_identity_is_perfect_and_of_a_constant_matrix_is_chance():
    r = recall_at_k(torch.eye(12) + 0.01 * torch.rand(12, 12))
    assert all(v == 1.0 for v in r.values()) and len(r) == 6
    flat = recall_at_k(torch.ones(12, 12), ks=(1, 5, 10))
    for k in (1, 5, 10):  # a collapsed model: ties broken at random, in expectation
        assert math.isclose(flat[f"image_to_text_r{k}"], chance_recall(12, k))
        assert math.isclose(flat[f"text_to_image_r{k}"], chance_recall(12, k))
    assert chance_recall(12, 5) == 5 / 12 and chance_recall(3, 5) == 1.0


def test_recall_on_a_matrix_with_known_ranks_and_ties():
    sim = torch.tensor([[0.9, 0.1, 0.2, 0.3],   # image 0: its caption first
                        [0.8, 0.5, 0.1, 0.2],   # image 1: second
                        [0.9, 0.8, 0.1, 0.7],   # image 2: last
                        [0.1, 0.2, 0.3, 0.4]])  # image 3: first
    r = recall_at_k(sim, ks=(1, 2, 3, 4))
    assert [r[f"image_to_text_r{k}"] for k in (1, 2, 3, 4)] == [0.5, 0.75, 0.75, 1.0]
    # captions: 0 ties image 2 for first (half a hit at k=1), 1 and 3 are second, 2 is
    # behind two images and tied with a third
    want = [0.5 / 4, 3 / 4, 3.5 / 4, 1.0]
    got = [r[f"text_to_image_r{k}"] for k in (1, 2, 3, 4)]
    assert all(math.isclose(g, w) for g, w in zip(got, want, strict=True)), got
    # a permutation: image i's caption is text p[i]
    p = torch.tensor([2, 0, 3, 1])
    shuffled = recall_at_k(torch.eye(4)[:, p.argsort()], ks=(1,), targets=p.argsort())
    assert shuffled == {"image_to_text_r1": 1.0, "text_to_image_r1": 1.0}
    wrong = recall_at_k(torch.eye(4)[:, p], ks=(1,))
    assert wrong == {"image_to_text_r1": 0.0, "text_to_image_r1": 0.0}


def test_recall_with_several_captions_per_image():
    sim = torch.tensor([[0.1, 0.9, 0.5, 0.2],    # image 0 owns texts 0, 1: best first
                        [0.8, 0.7, 0.3, 0.1]])   # image 1 owns texts 2, 3: behind two
    r = recall_at_k(sim, ks=(1, 2, 3), targets=torch.tensor([0, 0, 1, 1]))
    assert [r[f"image_to_text_r{k}"] for k in (1, 2, 3)] == [0.5, 0.5, 1.0]
    assert [r[f"text_to_image_r{k}"] for k in (1, 2)] == [0.25, 1.0]
    with pytest.raises(ValueError, match="targets"):
        recall_at_k(sim)


def test_zero_shot_accuracy_on_constructed_embeddings():
    classes = torch.eye(3)  # class c's text embedding is the c-th axis
    images = torch.tensor([[2.0, 0.1, 0.0], [0.0, 1.0, 0.3], [0.1, 0.0, 5.0],
                           [0.9, 1.0, 0.0]])
    assert zero_shot_accuracy(images, classes, torch.tensor([0, 1, 2, 0])) == 0.75
    # two templates per class whose off-axis parts cancel in the renormalised mean
    off = torch.tensor([0.0, 0.0, 0.0, 1.0])
    axes = F.pad(torch.eye(3), (0, 1))
    templates = torch.stack([axes + off, 3 * (axes - off)], dim=1)  # (C, T, D)
    assert torch.allclose(zero_shot_classifier(templates), axes, atol=1e-6)
    assert zero_shot_accuracy(F.pad(images, (0, 1)), templates,
                              torch.tensor([0, 1, 2, 1])) == 1.0


def test_prompts_are_class_major():
    out = prompts(["circle", "star"], ("a {}.", "the {} shape"))
    assert out == ["a circle.", "the circle shape", "a star.", "the star shape"]
    assert len(prompts(["x"])) == len(DEFAULT_TEMPLATES)


# ------------------------------------------------------------------------- the method


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_steps_on_a_fixed_batch_lower_the_loss_and_reach_every_parameter(pooling):
    """DDP's rule: every trainable parameter gets a gradient at every step; and the
    towers learn to match a fixed batch of pairs."""
    model = tiny_model(**{"method.text_pooling": pooling})
    batch = stand_in_pairs(16, 16, 12)
    cfg = model.cfg
    cfg.optim.lr, cfg.optim.weight_decay = 3e-3, 0.0
    opt = build_optimizer(model, cfg)
    aug, g = model.train_augment(), torch.Generator().manual_seed(0)
    losses = []
    for step in range(25):
        out = model.training_step(batch, aug, g)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if step == 0:
            missing = [n for n, p in model.named_parameters()
                       if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
            assert not missing, missing
            assert set(out.metrics) == {"temperature", "positive_similarity",
                                        "negative_similarity", "image_to_text_accuracy"}
        opt.step()
        model.after_step(step, 25)
        losses.append(float(out.loss.detach()))
    late = sum(losses[-5:]) / 5  # below chance (log 16) and far below the start
    assert late < math.log(16) - 0.5 and late < losses[0] - 2.0, losses
    assert float(out.metrics["positive_similarity"]) > float(out.metrics["negative_similarity"])


def test_monitor_hooks_read_images_of_pairs_and_score_both_ways():
    model = tiny_model()
    batch = stand_in_pairs(20, 16, 12, seed=3)
    model.eval()
    with torch.no_grad():
        x = model.eval_inputs(batch, 16)
        assert isinstance(x, torch.Tensor) and x.shape == (20, 3, 16, 16)
        f = model.embed(x)
        z = model.project(f)
        views = model.train_augment()(batch, torch.Generator().manual_seed(0))
    assert f.shape == (20, model.feature_dim) and z.shape == (20, 16)
    assert torch.allclose(z.norm(dim=1), torch.ones(20), atol=1e-5)
    assert views.shape == (20, 3, 16, 16)  # the monitor's alignment views of pairs

    sim = model.similarity_matrix(batch)
    assert sim.shape == (20, 20) and float(sim.abs().max()) <= 1 + 1e-5
    labels = torch.arange(20) % 3
    m = model.paired_metrics(batch, labels, ["circle", "square", "star"])
    assert model.training is False  # the mode it was called in is kept
    for k in (1, 5, 10):
        assert 0 <= m[f"image_to_text_r{k}"] <= 1 and 0 <= m[f"text_to_image_r{k}"] <= 1
        assert m[f"recall_chance_r{k}"] == k / 20
    assert 0 <= m["zero_shot_accuracy"] <= 1 and m["zero_shot_chance"] == 1 / 3
    assert "zero_shot_accuracy" not in model.paired_metrics(batch)


def test_prompts_become_padded_token_rows_of_the_sources_tokenizer():
    model = tiny_model()
    rows = model.encode_prompts(["a star.", "a very long caption indeed", ""])
    assert rows.shape == (3, 12) and rows.dtype == torch.long
    assert model.tokenizer.decode(rows[0]) == "a star."
    assert (rows[0, 7:] == PAD).all() and (rows[1] != PAD).all() and (rows[2] == PAD).all()
    emb = model.embed_texts(rows)
    assert torch.allclose(emb[:2].norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.isfinite(emb).all()  # the empty prompt too

    class Upper:
        def encode(self, text: str) -> list[int]:
            return [4 + ord(c) for c in text.upper()]

    class Source:
        tokenizer = Upper()

    model.attach_source(Source())
    assert model.encode_prompts(["ab"])[0, :2].tolist() == [4 + 65, 4 + 66]


def test_presets_keep_colours_and_sides_and_the_gpu_one_has_resnet18():
    cpu, gpu = default_config("clip"), default_config("clip", accelerator=True)
    for cfg in (cpu, gpu):
        assert cfg.augment.jitter_prob == cfg.augment.grayscale_prob == 0.0
        assert cfg.augment.flip_prob == 0.0 and cfg.augment.crop_min_scale >= 0.8
        assert cfg.method.temperature == 0.0  # learned
        cfg.validate()
    assert gpu.backbone.name == "resnet18" and cpu.backbone.name == "auto"
    assert 64 <= cpu.data.seq_len <= 96 and 64 <= cpu.optim.batch_size <= 128


def test_zero_shot_prompts_are_a_setting_checked_by_name():
    """The live zero-shot score reads the form's templates; a template without its '{}'
    is refused naming the field."""
    from engine.errors import ConfigError
    from engine.model import build_model
    from engine.presets import default_config

    cfg = default_config("clip")
    cfg.set("method.prompt_templates", "a {} thing. | an image of a {}")
    for key, value in {"backbone.width": 4, "method.dim": 16, "method.depth": 1,
                       "method.heads": 2}.items():
        cfg.set(key, value)
    model, _ = build_model(cfg, torch.device("cpu"))
    assert model.templates == ("a {} thing.", "an image of a {}")
    cfg.set("method.prompt_templates", "a photo of a")
    with pytest.raises(ConfigError, match="method.prompt_templates"):
        cfg.validate()
