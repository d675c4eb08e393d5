"""Exact sRGB <-> CIE Lab (D65) in torch, and the quantised ab colour space of colorization.

Pure functions of tensors with the three channels at dim ``-3`` (``(..., 3, H, W)``),
differentiable and device-agnostic. The conversions follow IEC 61966-2-1 (sRGB transfer
curve and primaries) and CIE 15 (Lab). The reference white is the sRGB matrix applied to
RGB = (1, 1, 1), i.e. D65 as sRGB defines it, so white maps exactly to ``L = 100, a = b =
0`` and every neutral grey to ``a = b = 0``.

The arithmetic is elementwise (no matmul), so it stays in float32 under autocast.

The quantised ab space is the one of Zhang, Isola, Efros, "Colorful Image Colorization"
(ECCV 2016, section 2.1): a square grid of ``grid`` ab units (10 in the paper) keeping
the cells that hold some sRGB colour (313 in the paper; the count here depends on how the
gamut is sampled), soft encoding of a colour on its 5 nearest bins with a Gaussian kernel
(sigma 5), annealed-mean decoding (eq. 5) and class-rebalancing weights (eq. 3-4).
"""

from __future__ import annotations

import functools

import torch

# sRGB primaries -> CIE XYZ (IEC 61966-2-1), rows X, Y, Z.
RGB_TO_XYZ: tuple[tuple[float, float, float], ...] = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
# The exact inverse (computed in float64 once, below).
_INV = torch.linalg.inv(torch.tensor(RGB_TO_XYZ, dtype=torch.float64))
XYZ_TO_RGB: tuple[tuple[float, ...], ...] = tuple(tuple(float(v) for v in row) for row in _INV)
# D65 white as the sRGB matrix defines it: XYZ of RGB = (1, 1, 1).
WHITE: tuple[float, float, float] = tuple(sum(row) for row in RGB_TO_XYZ)  # type: ignore[assignment]

_DELTA = 6.0 / 29.0
# Largest |a| and |b| of any sRGB colour is about 108: a scale that maps ab to about [-1, 1].
AB_SCALE = 110.0


def _mix(x: torch.Tensor, m: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """Apply a 3x3 matrix to the channel dim (-3), elementwise so autocast leaves it fp32."""
    c0, c1, c2 = x.unbind(-3)
    return torch.stack([r[0] * c0 + r[1] * c1 + r[2] * c2 for r in m], dim=-3)


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1)."""
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] -> sRGB-encoded values (inverse of :func:`srgb_to_linear`)."""
    return torch.where(c <= 0.0031308, 12.92 * c,
                       1.055 * c.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055)


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _DELTA**3, t.clamp(min=_DELTA**3) ** (1.0 / 3.0),
                       t / (3 * _DELTA**2) + 4.0 / 29.0)


def _f_inv(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _DELTA, t**3, 3 * _DELTA**2 * (t - 4.0 / 29.0))


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], ``(..., 3, H, W)`` -> CIE Lab (D65): L in [0, 100], a and b in about
    [-108, 98]."""
    xyz = _mix(srgb_to_linear(rgb.float()), RGB_TO_XYZ)
    x, y, z = (xyz[..., i, :, :] / WHITE[i] for i in range(3))
    fx, fy, fz = _f(x), _f(y), _f(z)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """CIE Lab (D65) -> sRGB; clamped to [0, 1] unless ``clamp`` is false (Lab colours
    outside the sRGB gamut then give values outside [0, 1])."""
    lab = lab.float()
    fy = (lab[..., 0, :, :] + 16.0) / 116.0
    fx = fy + lab[..., 1, :, :] / 500.0
    fz = fy - lab[..., 2, :, :] / 200.0
    xyz = torch.stack([WHITE[0] * _f_inv(fx), WHITE[1] * _f_inv(fy), WHITE[2] * _f_inv(fz)],
                      dim=-3)
    lin = _mix(xyz, XYZ_TO_RGB)
    if clamp:
        return linear_to_srgb(lin.clamp(0.0, 1.0))
    return torch.sign(lin) * linear_to_srgb(lin.abs())


def grey_from_lightness(lightness: torch.Tensor) -> torch.Tensor:
    """The neutral sRGB grey ``(..., 3, H, W)`` of lightness ``L`` ``(..., 1, H, W)``.

    This is the image Lab ``(L, 0, 0)`` on the screen, the three channels equal; the
    colorization encoder sees it (section 2.1 of Zhang et al. feeds L alone, here the
    shared 3-channel backbone gets it replicated).
    """
    y = _f_inv((lightness.float() + 16.0) / 116.0)  # relative luminance, Y / Y_white
    return linear_to_srgb(y.clamp(0.0, 1.0)).expand(*lightness.shape[:-3], 3,
                                                     *lightness.shape[-2:])


def rgb_to_grey(rgb: torch.Tensor) -> torch.Tensor:
    """The neutral grey of the same CIE lightness, ``(..., 3, H, W)`` in [0, 1].

    Equal to ``grey_from_lightness(rgb_to_lab(rgb)[..., :1, :, :])`` but computed directly:
    a neutral grey has linear value ``Y`` (relative luminance) on every channel, so the grey
    is the sRGB encoding of the luminance. Colorization's encoder input.
    """
    y = _mix(srgb_to_linear(rgb.float()), RGB_TO_XYZ[1:2]) / WHITE[1]  # (..., 1, H, W)
    return linear_to_srgb(y.clamp(0.0, 1.0)).expand(*rgb.shape)


# ----------------------------------------------------------------- quantised ab space


@functools.lru_cache(maxsize=8)
def _gamut_bins(grid: float, samples: int) -> torch.Tensor:
    vals = torch.linspace(0.0, 1.0, samples, dtype=torch.float32)
    rgb = torch.stack(torch.meshgrid(vals, vals, vals, indexing="ij")).reshape(3, -1, 1)
    ab = rgb_to_lab(rgb)[1:].reshape(2, -1).t()
    cells = torch.unique(torch.round(ab / grid), dim=0)
    return cells * grid


def ab_bin_centres(grid: float = 10.0, samples: int = 64) -> torch.Tensor:
    """``(Q, 2)`` centres of the in-gamut cells of an ab grid of side ``grid``.

    Centres sit on multiples of ``grid``; a cell is kept when one of ``samples ** 3``
    colours spread evenly over the sRGB cube falls in it (Zhang et al. keep the 313 bins
    of grid 10 in gamut). Sorted by (a, b), deterministic. Returns a new tensor each call.
    """
    if grid <= 0:
        raise ValueError(f"grid must be positive, got {grid}")
    return _gamut_bins(float(grid), int(samples)).clone()


def _brute_nearest(ab: torch.Tensor, c: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices of the ``k`` nearest of all bins (exact, O(N Q))."""
    # |x - c|^2 = |x|^2 + |c|^2 - 2 x.c; the dot product by hand stays fp32 under autocast
    dot = ab[:, :1] * c[:, 0] + ab[:, 1:] * c[:, 1]
    d2 = (ab * ab).sum(1, keepdim=True) + (c * c).sum(1) - 2 * dot
    d, i = torch.topk(d2, k, dim=1, largest=False)
    return d.clamp(min=0), i


def _window_nearest(ab: torch.Tensor, c: torch.Tensor, grid: float, k: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest bins among the 5 x 5 grid cells around each value (O(25 N)).

    Any cell outside the window is at least 2.5 grid steps away, so where the k-th
    candidate is closer than that the answer is exact; other rows (values near holes of
    the gamut or outside it) fall back to :func:`_brute_nearest`.
    """
    ci = torch.round(c / grid).long()
    lo = ci.min(0).values - 2
    size = ci.max(0).values - lo + 3
    lut = torch.full((int(size[0]), int(size[1])), -1, dtype=torch.long, device=ab.device)
    lut[ci[:, 0] - lo[0], ci[:, 1] - lo[1]] = torch.arange(c.shape[0], device=ab.device)
    r = torch.arange(-2, 3, device=ab.device)
    offs = torch.stack(torch.meshgrid(r, r, indexing="ij"), -1).reshape(1, 25, 2)
    cand = torch.round(ab / grid).long()[:, None, :] - lo + offs  # (N, 25, 2) LUT coords
    inside = ((cand >= 0) & (cand < size)).all(-1)
    cand = torch.minimum(cand.clamp(min=0), size - 1)
    cand_idx = torch.where(inside, lut[cand[..., 0], cand[..., 1]], -1)
    diff = ab[:, None, :] - c[cand_idx.clamp(min=0)]
    d2 = torch.where(cand_idx >= 0, (diff * diff).sum(-1), torch.inf)
    d, j = torch.topk(d2, k, dim=1, largest=False)
    idx = cand_idx.gather(1, j)
    redo = ~(d[:, -1] <= (2.5 * grid) ** 2)
    if bool(redo.any()):
        d[redo], idx[redo] = _brute_nearest(ab[redo], c, k)
    return d, idx


def encode_ab(
    ab: torch.Tensor, centres: torch.Tensor, grid: float, neighbours: int = 5,
    sigma: float = 5.0, chunk: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-encode ab values ``(N, 2)`` on the bins: indices and weights, ``(N, k)`` each.

    Zhang et al. 2016, section 2.1: the ``k`` nearest bins (5 in the paper), weighted in
    proportion to a Gaussian of the distance with ``sigma`` (5), normalised to sum to 1.
    ``neighbours = 1`` is the hard, nearest-bin target (weight 1). Column 0 is the nearest
    bin. ``centres`` are bin centres on multiples of ``grid`` (from :func:`ab_bin_centres`);
    the search looks at the grid cells around each value (exact, see
    :func:`_window_nearest`), in chunks of ``chunk`` values to bound memory.
    """
    if neighbours < 1 or neighbours > centres.shape[0]:
        raise ValueError(f"neighbours must be in [1, {centres.shape[0]}], got {neighbours}")
    ab = ab.float()
    c = centres.to(device=ab.device, dtype=torch.float32)
    parts = [_window_nearest(part, c, grid, neighbours) for part in ab.split(chunk)]
    d2 = torch.cat([p[0] for p in parts])
    idx = torch.cat([p[1] for p in parts])
    if neighbours == 1:
        return idx, torch.ones_like(d2)
    # softmax of -d^2 / (2 sigma^2): the Gaussian weights, normalised, without underflow
    return idx, torch.softmax(-d2 / (2 * sigma**2), dim=1)


def decode_ab(logits: torch.Tensor, centres: torch.Tensor, temperature: float = 0.38
              ) -> torch.Tensor:
    """Point estimate of ab from bin logits ``(B, Q, H, W)``: ``(B, 2, H, W)``.

    The annealed mean of Zhang et al. (eq. 5): the mean of the bin centres under the
    distribution re-normalised at temperature ``T``, ``f_T(z) = exp(log z / T) / sum
    exp(log z / T)``, which equals ``softmax(logits / T)``. ``T = 1`` is the mean (greyish,
    spatially consistent), ``T -> 0`` the mode (vivid, patchy); the paper uses 0.38.
    ``temperature = 0`` gives the mode exactly.
    """
    c = centres.to(device=logits.device, dtype=torch.float32)
    logits = logits.float()
    if temperature <= 0:
        return c[logits.argmax(1)].permute(0, 3, 1, 2)
    p = torch.softmax(logits / temperature, dim=1)
    a = (p * c[:, 0].view(1, -1, 1, 1)).sum(1)
    b = (p * c[:, 1].view(1, -1, 1, 1)).sum(1)
    return torch.stack([a, b], dim=1)


def gaussian_smoothing_matrix(centres: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(Q, Q)`` matrix ``G[q, k] = exp(-|c_q - c_k|^2 / 2 sigma^2)``, columns normalised
    to sum to 1, so ``G @ p`` smooths a distribution over bins and keeps its total."""
    c = centres.double()
    g = torch.exp(-torch.cdist(c, c) ** 2 / (2 * sigma**2))
    return (g / g.sum(0, keepdim=True)).float()


def rebalance_weights(p: torch.Tensor, smoothing: torch.Tensor, mix: float = 0.5
                      ) -> torch.Tensor:
    """Class-rebalancing weights ``w`` over the Q bins (Zhang et al. 2016, eq. 4).

    ``p`` is the empirical distribution of the (nearest-bin) ab targets; it is smoothed
    with the Gaussian kernel ``smoothing`` (from :func:`gaussian_smoothing_matrix`, sigma 5
    in the paper) to ``p~``, mixed with the uniform distribution with weight ``mix``
    (lambda = 0.5 in the paper) and inverted: ``w ~ ((1 - lambda) p~ + lambda / Q)^-1``,
    normalised so that ``sum_q p~_q w_q = 1`` (the expected weight of a pixel is 1). Rare,
    saturated colours get large weights, so the loss stops favouring the common
    desaturated ones. ``mix = 1`` gives ``w = 1`` everywhere.
    """
    q = p.shape[0]
    p = p.float() / p.float().sum().clamp(min=1e-12)
    p_smooth = smoothing.to(p) @ p
    w = 1.0 / ((1 - mix) * p_smooth + mix / q)
    return w / (p_smooth * w).sum()


def chroma(ab: torch.Tensor) -> torch.Tensor:
    """Mean colourfulness ``sqrt(a^2 + b^2)`` (CIE chroma) of ab images ``(B, 2, H, W)``."""
    ab = ab.float()
    return torch.sqrt(ab[:, 0] ** 2 + ab[:, 1] ** 2).mean()
