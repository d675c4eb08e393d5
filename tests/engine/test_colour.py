"""sRGB <-> CIE Lab (D65) and the quantised ab space of colorization (Zhang et al. 2016)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.colour import (
    _brute_nearest,
    ab_bin_centres,
    chroma,
    decode_ab,
    encode_ab,
    gaussian_smoothing_matrix,
    grey_from_lightness,
    lab_to_rgb,
    linear_to_srgb,
    rebalance_weights,
    rgb_to_grey,
    rgb_to_lab,
    srgb_to_linear,
)


def pixels(*rgb: tuple[float, float, float]) -> torch.Tensor:
    """Colours as a (3, 1, N) image."""
    return torch.tensor(rgb, dtype=torch.float32).t().reshape(3, 1, len(rgb))


def as_rows(img: torch.Tensor) -> torch.Tensor:
    return img.reshape(3, -1).t()


# ------------------------------------------------------------------ conversions


def test_reference_lab_values():
    # CIE Lab (D65) of the sRGB primaries, as published (e.g. Lindbloom's calculator)
    rgb = pixels((1, 1, 1), (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0.5))
    expected = torch.tensor([
        [100.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
        [53.2408, 80.0925, 67.2032],
        [87.7347, -86.1827, 83.1793],
        [32.2970, 79.1875, -107.8602],
        [53.3890, 0.0, 0.0],
    ])
    assert torch.allclose(as_rows(rgb_to_lab(rgb)), expected, atol=2e-3)


def test_srgb_transfer_curve_round_trip_and_knee():
    c = torch.linspace(0, 1, 1001)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(c)), c, atol=1e-6)
    assert math.isclose(float(srgb_to_linear(torch.tensor(0.04045))), 0.04045 / 12.92,
                        rel_tol=1e-6)
    assert math.isclose(float(srgb_to_linear(torch.tensor(0.5))), 0.214041, rel_tol=1e-5)


def test_rgb_lab_round_trip():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(4, 3, 16, 16, generator=g)
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape
    assert torch.allclose(lab_to_rgb(lab), rgb, atol=1e-4)
    # and Lab -> RGB -> Lab for in-gamut colours
    assert torch.allclose(rgb_to_lab(lab_to_rgb(lab)), lab, atol=5e-3)
    assert lab[:, 0].min() >= 0 and lab[:, 0].max() <= 100


def test_out_of_gamut_lab_is_clamped_unless_asked():
    lab = pixels((50.0, 120.0, -120.0))
    assert lab_to_rgb(lab).min() >= 0 and lab_to_rgb(lab).max() <= 1
    raw = lab_to_rgb(lab, clamp=False)
    assert raw.min() < 0 or raw.max() > 1


def test_grey_keeps_lightness_and_has_no_colour():
    g = torch.Generator().manual_seed(1)
    rgb = torch.rand(2, 3, 8, 8, generator=g)
    grey = rgb_to_grey(rgb)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    lab, lab_grey = rgb_to_lab(rgb), rgb_to_lab(grey)
    assert torch.allclose(lab_grey[:, 0], lab[:, 0], atol=1e-3)
    assert lab_grey[:, 1:].abs().max() < 1e-3
    assert torch.allclose(grey_from_lightness(lab[:, :1]), grey, atol=1e-5)


def test_chroma():
    ab = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    assert math.isclose(float(chroma(ab)), 5.0)
    assert float(chroma(torch.zeros(1, 2, 3, 3))) == 0.0


# ------------------------------------------------------------------ quantised ab space


def test_bin_centres_cover_the_gamut_on_the_grid():
    c = ab_bin_centres(10.0)
    q = c.shape[0]
    assert 200 < q <= 313  # the paper's in-gamut count at grid 10 is 313 (convex hull)
    assert torch.equal(c, torch.round(c / 10) * 10)
    assert len({tuple(r) for r in c.tolist()}) == q
    # every sRGB colour is within half a cell diagonal of a bin centre
    g = torch.Generator().manual_seed(0)
    ab = as_rows(rgb_to_lab(torch.rand(3, 1, 5000, generator=g)))[:, 1:]
    assert torch.cdist(ab, c).min(1).values.max() <= 10 * math.sqrt(2) / 2 + 1e-4
    assert ab_bin_centres(20.0).shape[0] < q / 3


def test_bins_round_trip_through_encoding_and_decoding():
    c = ab_bin_centres(10.0)
    q = c.shape[0]
    idx, w = encode_ab(c, c, 10.0, neighbours=1)
    assert torch.equal(idx[:, 0], torch.arange(q)) and torch.equal(w, torch.ones(q, 1))
    # a confident one-hot prediction decodes to its centre, by the mode and the annealed mean
    logits = torch.full((q, q), -30.0)
    logits[torch.arange(q), torch.arange(q)] = 30.0
    logits = logits.view(q, q, 1, 1)
    for t in (0.0, 0.38, 1.0):
        assert torch.allclose(decode_ab(logits, c, t).view(q, 2), c, atol=1e-3)


def test_soft_encoding_is_the_gaussian_on_the_nearest_bins():
    c = ab_bin_centres(10.0)
    g = torch.Generator().manual_seed(2)
    ab = as_rows(rgb_to_lab(torch.rand(3, 1, 3000, generator=g)))[:, 1:]
    idx, w = encode_ab(ab, c, 10.0, neighbours=5, sigma=5.0)
    assert idx.shape == w.shape == (3000, 5)
    assert torch.allclose(w.sum(1), torch.ones(3000), atol=1e-5)
    d = torch.cdist(ab, c)
    nearest5 = torch.topk(d, 5, dim=1, largest=False)
    assert torch.allclose(d.gather(1, idx), nearest5.values, atol=1e-3)
    assert torch.equal(idx[:, 0], d.argmin(1))
    expected = torch.exp(-nearest5.values**2 / 50)
    assert torch.allclose(w, expected / expected.sum(1, keepdim=True), atol=1e-4)
    # decoding the soft encoding by its mean gives back a colour in the same cell
    logits = torch.full((3000, c.shape[0]), -1e4)
    logits.scatter_(1, idx, w.log())
    back = decode_ab(logits.view(3000, -1, 1, 1), c, 1.0).view(3000, 2)
    assert (back - ab).norm(dim=1).max() < 5.0


def test_fast_search_matches_brute_force_even_far_outside_the_gamut():
    c = ab_bin_centres(10.0)
    g = torch.Generator().manual_seed(3)
    ab = torch.cat([torch.randn(500, 2, generator=g) * 60, torch.randn(50, 2, generator=g) * 400])
    idx, _ = encode_ab(ab, c, 10.0, neighbours=5, chunk=128)
    d_fast = (ab[:, None] - c[idx]).norm(dim=-1)
    d_brute = _brute_nearest(ab, c, 5)[0].sqrt()
    assert torch.allclose(d_fast, d_brute, atol=1e-2)


def test_rebalancing_weights_are_normalised_and_favour_rare_colours():
    c = ab_bin_centres(10.0)
    q = c.shape[0]
    smooth = gaussian_smoothing_matrix(c, 5.0)
    assert torch.allclose(smooth.sum(0), torch.ones(q), atol=1e-5)
    g = torch.Generator().manual_seed(4)
    counts = torch.rand(q, generator=g) ** 4 * 1000
    p_smooth = smooth @ (counts / counts.sum())
    w = rebalance_weights(counts, smooth, mix=0.5)
    assert w.shape == (q,) and (w > 0).all()
    # expected weight of a pixel under the smoothed distribution is 1 (paper, eq. 4)
    assert math.isclose(float((p_smooth * w).sum()), 1.0, rel_tol=1e-5)
    # w ~ 1 / ((1 - lambda) p~ + lambda / Q): rarer bins weigh more
    assert torch.allclose(w * (0.5 * p_smooth + 0.5 / q), (w * (0.5 * p_smooth + 0.5 / q))[0]
                          .expand(q), rtol=1e-4)
    order = torch.argsort(p_smooth)
    assert w[order[0]] > w[order[-1]]
    # lambda = 1: uniform weights, all 1; lambda = 0: plain inverse frequency
    assert torch.allclose(rebalance_weights(counts, smooth, mix=1.0), torch.ones(q), atol=1e-5)
    w0 = rebalance_weights(counts, smooth, mix=0.0)
    assert torch.allclose(w0 * p_smooth, torch.full((q,), 1.0 / q), rtol=1e-3)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_bad_grid_is_refused(bad):
    with pytest.raises(ValueError):
        ab_bin_centres(bad)
