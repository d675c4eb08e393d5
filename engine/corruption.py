"""Corruptions of reconstruction methods: box masks, pixel masks, Gaussian noise.

Pure functions, written once and shared by inpainting (Pathak et al. 2016) and the
denoising autoencoder (Vincent et al. 2008). Every random number comes from the
``generator`` passed in, drawn on the generator's device (as :class:`ViewAugment` does)
and then moved to the images' device, so a seeded CPU generator gives the same masks and
noise whether the images live on the CPU or a GPU, and resumed runs repeat exactly.
"""

from __future__ import annotations

import math

import torch

BOX_MODES = ("central", "random")


def _rand_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def box_size(resolution: int, fraction: float) -> int:
    """Side in pixels of a square box covering ``fraction`` of the image side (at least 1)."""
    return max(1, min(resolution, round(fraction * resolution)))


def box_masks(
    n: int,
    resolution: int,
    size: int,
    mode: str = "central",
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(n, 1, R, R)`` bool masks, True inside a ``size`` x ``size`` square.

    ``central``: the square centred in the image (top-left corner at ``(R - size) // 2``),
    Pathak et al.'s central region. ``random``: per image, a top-left corner uniform over
    the positions that keep the whole square inside the image (their "random block").
    """
    if mode not in BOX_MODES:
        raise ValueError(f"mode must be one of {BOX_MODES}, got {mode!r}")
    if not 1 <= size <= resolution:
        raise ValueError(f"box size must be in [1, {resolution}], got {size}")
    if mode == "central":
        top = torch.full((n, 2), (resolution - size) // 2, dtype=torch.long)
    else:
        u = torch.rand(n, 2, generator=generator, device=_rand_device(generator))
        top = (u * (resolution - size + 1)).long().clamp_(max=resolution - size).cpu()
    top = top.to(device)
    r = torch.arange(resolution, device=device)
    rows = (r >= top[:, :1]) & (r < top[:, :1] + size)  # (n, R)
    cols = (r >= top[:, 1:]) & (r < top[:, 1:] + size)
    return (rows[:, :, None] & cols[:, None, :])[:, None]


def pixel_masks(
    n: int,
    resolution: int,
    fraction: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(n, 1, R, R)`` bool masks with exactly ``round(fraction * R^2)`` True pixels each.

    Vincent et al. 2008's masking noise: "a fixed number nu*d of components of x are chosen
    at random", here whole pixels (all channels) chosen uniformly without replacement.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    d = resolution * resolution
    k = round(fraction * d)
    u = torch.rand(n, d, generator=generator, device=_rand_device(generator)).to(device)
    mask = torch.zeros(n, d, dtype=torch.bool, device=device)
    if k > 0:
        mask.scatter_(1, torch.topk(u, k, dim=1).indices, True)
    return mask.view(n, 1, resolution, resolution)


def gaussian_noise(
    x01: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """``x + sigma * N(0, 1)`` for images in [0, 1] (Vincent et al.'s additive isotropic
    Gaussian noise), clipped back to [0, 1] unless ``clip`` is false, so the corrupted input
    is still an image (and is what the preview shows)."""
    noise = torch.randn(x01.shape, generator=generator, device=_rand_device(generator))
    out = x01 + sigma * noise.to(device=x01.device, dtype=x01.dtype)
    return out.clamp_(0.0, 1.0) if clip else out


def psnr(mse01: torch.Tensor | float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error on [0, peak] images
    (capped at 100 dB, so a perfect reconstruction still gives a finite number)."""
    return 10.0 * math.log10(peak**2 / max(float(mse01), 1e-10 * peak**2))
