"""Tests of the batched SimCLR augmentations (engine/augment.py)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from engine.augment import (
    _FACTORS,
    _N_RAND,
    LUMA,
    MEAN,
    STD,
    ViewAugment,
    denormalize,
    eval_transform,
    normalize,
    to_float,
)
from engine.config import AugmentConfig

# Every augmentation off and the crop fixed to the whole image.
OFF = AugmentConfig(crop_min_scale=1.0, crop_max_scale=1.0, flip_prob=0.0, jitter_prob=0.0,
                    grayscale_prob=0.0, blur_prob=0.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny batches: thread hand-offs cost more than they save, worst on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=gen(seed))


def smooth_colour_images(b: int = 16, size: int = 32) -> torch.Tensor:
    """Mid-range colourful images, so colour ops rarely hit the [0, 1] clamp."""
    t = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    phase = torch.arange(b, dtype=torch.float32)[:, None, None, None]
    chan = torch.arange(3, dtype=torch.float32)[None, :, None, None] * 2.1
    x = 0.5 + 0.25 * torch.sin(3 * xx + 2 * yy + chan + phase)
    return (x * 255).round().to(torch.uint8)


def luma(x01: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(LUMA).view(1, 3, 1, 1)
    return (x01 * w).sum(dim=1)


def test_constants_and_normalize_round_trip() -> None:
    assert len(MEAN) == len(STD) == 3
    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(denormalize(normalize(x)), x, atol=1e-6)
    u8 = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    f = to_float(u8)
    assert f.dtype == torch.float32
    assert torch.allclose(f.flatten(), torch.tensor([0.0, 128 / 255, 1.0]))


@pytest.mark.parametrize("blur", [0.0, 0.5])
def test_shape_dtype_range(blur: float) -> None:
    aug = ViewAugment(replace(AugmentConfig(), blur_prob=blur), out_size=24)
    v = aug(images(10, 32), gen())
    assert v.shape == (10, 3, 24, 24)
    assert v.dtype == torch.float32
    x01 = denormalize(v)
    assert x01.min() >= -1e-5 and x01.max() <= 1 + 1e-5


def test_all_off_is_identity() -> None:
    x = images()
    v = ViewAugment(OFF, 32)(x, gen())
    assert torch.allclose(v, eval_transform(x, 32), atol=1e-5)


def test_crop_scale_one_is_whole_image_for_non_square() -> None:
    """The torchvision fallback: a centred box with the aspect ratio clamped to [3/4, 4/3]."""
    ramp = torch.arange(40, dtype=torch.float32) / 39  # float input: value = column / 39
    x = ramp.expand(4, 3, 20, 40)
    v = denormalize(ViewAugment(OFF, 20)(x, gen()))
    # Width 40 is cut to 20 * 4/3 = 26.67 px around the centre, then resized to 20 px.
    box = 20 * 4 / 3
    src = (40 - box) / 2 + (torch.arange(20) + 0.5) * box / 20 - 0.5
    assert v.shape == (4, 3, 20, 20)
    assert torch.allclose(v, (src / 39).expand_as(v), atol=1e-5)


def test_flip_is_exact_mirror() -> None:
    x = images()
    v = ViewAugment(replace(OFF, flip_prob=1.0), 32)(x, gen())
    assert torch.allclose(v, eval_transform(x.flip(-1), 32), atol=1e-5)


def test_grayscale_gives_equal_channels() -> None:
    v = denormalize(ViewAugment(replace(AugmentConfig(), grayscale_prob=1.0), 32)(images(), gen()))
    assert torch.allclose(v[:, 0], v[:, 1], atol=1e-6)
    assert torch.allclose(v[:, 0], v[:, 2], atol=1e-6)


def test_copies_of_one_image_get_different_views() -> None:
    x = images(1).expand(8, -1, -1, -1)
    v = ViewAugment(AugmentConfig(), 32)(x, gen()).flatten(1)
    dist = torch.cdist(v, v)
    off_diag = dist[~torch.eye(8, dtype=torch.bool)]
    assert off_diag.min() > 1e-3


def test_seeded_generator_is_deterministic() -> None:
    aug = ViewAugment(replace(AugmentConfig(), blur_prob=0.5), 32)
    x = images()
    assert torch.equal(aug(x, gen(3)), aug(x, gen(3)))
    assert not torch.allclose(aug(x, gen(3)), aug(x, gen(4)))
    # Two calls with one generator are SimCLR's two views: different.
    g = gen(3)
    assert not torch.allclose(aug(x, g), aug(x, g))


def test_global_rng_without_generator() -> None:
    aug = ViewAugment(AugmentConfig(), 16)
    x = images(4, 16)
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    assert torch.equal(a, aug(x))


def test_results_are_not_overwritten_by_later_calls() -> None:
    """CPU buffers are reused between calls; returned views must never be among them."""
    x = images()
    for cfg in (OFF, replace(OFF, grayscale_prob=1.0), AugmentConfig(),
                replace(AugmentConfig(), blur_prob=1.0, grayscale_prob=0.0),
                replace(AugmentConfig(), blur_prob=1.0, hue=0.0)):
        aug = ViewAugment(cfg, 32)
        g = gen()
        v1 = aug(x, g)
        keep = v1.clone()
        v2 = aug(x, g)
        aug(images(16, 32, seed=1), g)
        assert torch.equal(v1, keep)
        assert v1.data_ptr() != v2.data_ptr()


def test_other_threads_get_their_own_buffers() -> None:
    aug = ViewAugment(AugmentConfig(), 32)
    x = images()
    results: list[torch.Tensor] = []
    worker = threading.Thread(target=lambda: results.append(aug(x, gen(9))))
    worker.start()
    worker.join()
    assert torch.equal(results[0], aug(x, gen(9)))


def test_float_and_single_channel_input() -> None:
    x = images()
    aug = ViewAugment(AugmentConfig(), 32)
    assert torch.allclose(aug(x, gen()), aug(to_float(x), gen()), atol=1e-5)
    gray = x[:, :1]
    assert torch.allclose(aug(gray, gen()), aug(gray.expand(-1, 3, -1, -1), gen()), atol=1e-6)
    assert aug(x[:0], gen()).shape == (0, 3, 32, 32)
    with pytest.raises(ValueError):
        aug(x[:, :2], gen())


def test_crop_matches_affine_grid_and_stays_inside() -> None:
    """The hand-built grid equals F.affine_grid of the same theta; boxes respect the config."""
    cfg = replace(OFF, crop_min_scale=0.2, crop_max_scale=0.9, flip_prob=0.5)
    aug = ViewAugment(cfg, 24)
    x = images(64, 32)
    u = torch.rand(64, _N_RAND, generator=gen(7))
    p = aug._crop_params(u, 32, 32)
    theta = torch.zeros(64, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = p.unbind(1)
    grid = F.affine_grid(theta, [64, 3, 24, 24], align_corners=False)
    ref = F.grid_sample(to_float(x), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    assert torch.allclose(aug(x, gen(7)), normalize(ref), atol=1e-4)

    fw, fh = p[:, 0].abs(), p[:, 2]
    assert ((p[:, 1].abs() + fw) <= 1 + 1e-6).all()
    assert ((p[:, 3].abs() + fh) <= 1 + 1e-6).all()
    area = fw * fh
    assert (area >= 0.2 - 1e-5).all() and (area <= 0.9 + 1e-5).all()
    ratio = fw / fh
    assert (ratio >= 3 / 4 - 1e-5).all() and (ratio <= 4 / 3 + 1e-5).all()
    assert 10 < (p[:, 0] < 0).sum() < 54  # about half flipped


def test_brightness_changes_mean() -> None:
    cfg = replace(OFF, jitter_prob=1.0, brightness=0.5, contrast=0.0, saturation=0.0, hue=0.0)
    x = smooth_colour_images()
    v = denormalize(ViewAugment(cfg, 32)(x, gen()))
    ratio = v.mean(dim=(1, 2, 3)) / to_float(x).mean(dim=(1, 2, 3))
    assert (ratio > 0.5 - 1e-3).all() and (ratio < 1.5 + 1e-3).all()
    assert ((ratio - 1).abs() > 0.01).float().mean() > 0.8
    assert ratio.std() > 0.05  # per image factors


def test_contrast_keeps_mean_luma() -> None:
    cfg = replace(OFF, jitter_prob=1.0, brightness=0.0, contrast=0.5, saturation=0.0, hue=0.0)
    x = smooth_colour_images()
    v = denormalize(ViewAugment(cfg, 32)(x, gen()))
    x01 = to_float(x)
    assert torch.allclose(luma(v).mean(dim=(1, 2)), luma(x01).mean(dim=(1, 2)), atol=1e-3)
    assert not torch.allclose(v.std(dim=(1, 2, 3)), x01.std(dim=(1, 2, 3)), atol=1e-3)


def test_hue_keeps_luma_and_changes_colour() -> None:
    cfg = replace(OFF, jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5)
    x = smooth_colour_images()
    v = denormalize(ViewAugment(cfg, 32)(x, gen()))
    x01 = to_float(x)
    assert (luma(v) - luma(x01)).abs().max() < 0.03
    assert (v - x01).abs().mean() > 0.05


def test_saturation_scales_colourfulness() -> None:
    cfg = replace(OFF, jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=1.0, hue=0.0)
    x = smooth_colour_images()
    v = denormalize(ViewAugment(cfg, 32)(x, gen()))
    x01 = to_float(x)
    spread = (v.amax(1) - v.amin(1)).mean(dim=(1, 2)) / (x01.amax(1) - x01.amin(1)).mean(dim=(1, 2))
    assert spread.min() < 0.5 and spread.max() > 1.2  # factors span [0, 2]


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation"])
def test_jitter_ops_match_torchvision(op: str) -> None:
    """Same per-image factors as torchvision's ColorJitter, same blend and clamp."""
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    strengths = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, op: 0.6}
    cfg = replace(OFF, jitter_prob=1.0, **strengths)
    x = images(8)
    v = denormalize(ViewAugment(cfg, 32)(x, gen(2)))
    i = ["brightness", "contrast", "saturation"].index(op)
    u = torch.rand(8, _N_RAND, generator=gen(2))[:, _FACTORS][:, i]
    factors = 0.4 + u * 1.2  # uniform in [1 - 0.6, 1 + 0.6]
    fn = getattr(tvf, f"adjust_{op}")
    x01 = to_float(x)
    ref = torch.stack([fn(x01[j], float(factors[j])) for j in range(8)])
    assert torch.allclose(v, ref, atol=2e-4)  # luma 0.299 here vs torchvision's 0.2989


def test_hue_turns_the_same_way_as_torchvision() -> None:
    """YIQ rotation is not HSV's hexagon walk, but it should shift hue the same way."""
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    cfg = replace(OFF, jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.05)
    x = smooth_colour_images(8)
    v = denormalize(ViewAugment(cfg, 32)(x, gen(2)))
    shift = (2 * torch.rand(8, _N_RAND, generator=gen(2))[:, _FACTORS][:, 3] - 1) * 0.05
    x01 = to_float(x)
    ref = torch.stack([tvf.adjust_hue(x01[j], float(shift[j])) for j in range(8)])
    cos = F.cosine_similarity((v - x01).flatten(1), (ref - x01).flatten(1), dim=1)
    assert (cos > 0.5).all()


def test_blur_reduces_high_frequencies() -> None:
    size = 32
    idx = torch.arange(size)
    board = ((idx[:, None] + idx[None, :]) % 2 * 255).to(torch.uint8)
    x = board.expand(8, 3, size, size)
    cfg = replace(OFF, blur_prob=1.0, blur_sigma_max=2.0)
    v = denormalize(ViewAugment(cfg, size)(x, gen()))
    x01 = to_float(x)

    def hf(t: torch.Tensor) -> torch.Tensor:
        return (t[..., 1:] - t[..., :-1]).abs().mean(dim=(1, 2, 3))

    # Sigma is uniform in [0.1, 2]: the smallest barely blur, most wipe the board out.
    assert (hf(v) <= hf(x01) + 1e-6).all()
    assert (hf(v) < 0.5 * hf(x01)).sum() >= 5
    assert torch.allclose(v.mean(), x01.mean(), atol=0.02)
    # A constant image stays constant (normalised taps, reflect padding).
    const = torch.full((4, 3, size, size), 77, dtype=torch.uint8)
    vc = ViewAugment(replace(OFF, blur_prob=1.0), size)(const, gen())
    assert torch.allclose(vc, eval_transform(const, size), atol=1e-5)


def test_blur_kernel_is_capped_to_small_images() -> None:
    cfg = replace(OFF, blur_prob=1.0, blur_sigma_max=10.0)
    v = ViewAugment(cfg, 6)(images(4, 6), gen())
    assert v.shape == (4, 3, 6, 6) and torch.isfinite(v).all()


def test_eval_transform_resizes() -> None:
    const = torch.full((2, 3, 64, 64), 200, dtype=torch.uint8)
    out = eval_transform(const, 32)
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(denormalize(out), torch.full_like(out, 200 / 255), atol=1e-5)
    # A horizontal ramp stays a ramp.
    ramp = torch.linspace(0, 255, 64).round().to(torch.uint8).expand(1, 3, 64, 64)
    r = denormalize(eval_transform(ramp, 32))[0, 0, 0]
    assert (r[1:] > r[:-1]).all()
    assert math.isclose(float(r.mean()), 0.5, abs_tol=0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_with_cpu_generator() -> None:
    aug = ViewAugment(replace(AugmentConfig(), blur_prob=0.5), 32)
    x = images()
    cpu = aug(x, gen(1))
    cuda = aug(x.cuda(), gen(1))
    assert cuda.device.type == "cuda"
    assert torch.allclose(cpu, cuda.cpu(), atol=1e-2)  # TF32 matmuls may be enabled
