import math

import torch

from engine.monitor import collapse_std, effective_rank, knn_accuracy


def test_collapse_std_isotropic_near_reference_and_constant_zero():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 64, generator=g)
    assert abs(collapse_std(z) - 1 / math.sqrt(64)) < 0.01
    const = torch.ones(100, 64)
    assert collapse_std(const) < 1e-6


def test_effective_rank_tracks_dimensional_collapse():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(2000, 32, generator=g)
    assert effective_rank(iso) > 0.8 * 32
    low = torch.randn(2000, 3, generator=g) @ torch.randn(3, 32, generator=g)
    assert effective_rank(low) < 3.5
    assert effective_rank(torch.ones(50, 32)) < 1.1


def test_knn_accuracy_on_known_features():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(5).repeat(40)
    onehot = torch.nn.functional.one_hot(labels, 5).float()
    feats = onehot + 0.05 * torch.randn(200, 5, generator=g)
    assert knn_accuracy(feats, labels, k=10, temperature=0.07) == 1.0
    rand = torch.randn(200, 5, generator=g)
    assert knn_accuracy(rand, labels, k=10, temperature=0.07) < 0.45


def test_collapse_verdicts_on_constructed_embeddings():
    from engine.monitor import collapse_verdict

    def verdict(z):
        return collapse_verdict(collapse_std(z), 1 / math.sqrt(z.shape[1]), effective_rank(z),
                                z.shape[1], z.shape[0])

    g = torch.Generator().manual_seed(0)
    assert verdict(torch.randn(1000, 128, generator=g)) == "healthy"
    low = torch.randn(1000, 3, generator=g) @ torch.randn(3, 128, generator=g)
    assert verdict(low) == "dimensional"
    const = torch.ones(1000, 128) + 1e-4 * torch.randn(1000, 128, generator=g)
    assert verdict(const) == "complete"


def test_spectrum_is_smooth_for_isotropic_and_a_cliff_for_rank_3():
    from engine.monitor import spectrum

    g = torch.Generator().manual_seed(0)
    iso = spectrum(torch.randn(2000, 64, generator=g))
    assert len(iso) == 64 and iso == sorted(iso, reverse=True)
    assert iso[0] - iso[-1] < 1.0  # within an order of magnitude
    low = spectrum(torch.randn(2000, 3, generator=g) @ torch.randn(3, 64, generator=g))
    assert low[2] - low[3] > 6  # a cliff after the third direction


def test_alignment_and_uniformity_match_their_definitions():
    from engine.monitor import alignment, uniformity

    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 32, generator=g)
    assert alignment(z, z) == 0.0 and abs(alignment(z, -z) - 4.0) < 1e-9
    # hand-computed: two orthogonal unit vectors, |zi - zj|^2 = 2 for the only pair
    assert abs(uniformity(torch.eye(2)) - (-4.0)) < 1e-9
    assert uniformity(torch.ones(50, 8)) == 0.0  # complete collapse
    assert uniformity(z) < -3.0  # spread out in 32-d


def test_collapse_explanations_name_switches_or_give_the_methods_advice():
    from engine.advice import explain_collapse
    from engine.presets import default_config
    from engine.registry import available_methods

    cfg = default_config("simclr")
    assert explain_collapse("healthy", cfg).startswith("Healthy")
    cfg.set("method.temperature", 0.005)
    text = explain_collapse("complete", cfg)
    assert "Likely cause: method.temperature = 0.005 (default" in text
    assert "restore the default" in text
    # no switch on: the method's own advice, e.g. MAE's low rank is judged by reconstructions
    text = explain_collapse("dimensional", default_config("mae"))
    assert "No collapse switch is on" in text and "reconstructions" in text
    for name in ("byol", "simsiam"):
        assert "predictor_lr_mult" in explain_collapse("dimensional", default_config(name))
    # every method with a loss that can collapse declares its advice in its own file
    with_advice = {m.name for m in available_methods() if m.collapse_advice}
    assert {"simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino",
            "triplet", "mae"} <= with_advice


def test_anisotropy_is_the_mean_cosine_between_different_samples():
    import torch.nn.functional as F

    from engine.monitor import anisotropy

    z = torch.randn(60, 16, generator=torch.Generator().manual_seed(0))
    u = F.normalize(z, dim=1)
    c = u @ u.t()
    pairs = (c.sum() - c.diagonal().sum()) / (60 * 59)
    assert abs(anisotropy(z) - float(pairs)) < 1e-6
    assert abs(anisotropy(torch.randn(2000, 32))) < 0.01  # isotropic
    assert anisotropy(torch.randn(200, 32) + 20) > 0.99  # one narrow cone


def test_text_runs_hear_the_verdict_in_words_of_text():
    from engine.advice import explain_collapse
    from engine.presets import default_config

    text = explain_collapse("dimensional", default_config("gpt", False))
    assert text.startswith("Anisotropy") and "document" in text
    assert "augmentation" not in text  # text methods have no image augmentation
    image = explain_collapse("dimensional", default_config("simclr", False))
    assert image.startswith("Dimensional collapse") and "augmentation" in image


def test_collapse_verdicts_hold_for_small_and_imbalanced_sets():
    """A user's folder may hold 25 images, or one class with 95 % of them: a healthy
    embedding of such a set (class clusters in 512 dimensions) must not read as collapse,
    and a collapsed one must still read as collapse."""
    from engine.verdict import collapse_verdict

    def verdict(z: torch.Tensor) -> str:
        d = z.shape[1]
        return collapse_verdict(collapse_std(z), d ** -0.5, effective_rank(z), d, z.shape[0])

    g = torch.Generator().manual_seed(0)
    d = 512
    for counts, noise in [((5,) * 6, 1.0), ((36,) + (1,) * 4, 1.0), ((1800,) + (40,) * 5, 0.5),
                          ((285, 15), 0.7), ((25,), 1.0), ((2, 1), 1.0)]:
        centres = torch.randn(len(counts), d, generator=g)
        z = torch.cat([c + noise * torch.randn(k, d, generator=g)
                       for c, k in zip(centres, counts, strict=True)])
        assert verdict(z) == "healthy", counts
        point = torch.randn(1, d, generator=g)
        assert verdict(point + 1e-3 * torch.randn(z.shape[0], d, generator=g)) == "complete"
        if z.shape[0] >= 40:
            flat = torch.randn(z.shape[0], 2, generator=g) @ torch.randn(2, d, generator=g)
            assert verdict(flat) == "dimensional", counts


def test_a_narrow_projector_on_a_spread_backbone_is_not_dimensional_collapse():
    """Measured on shapes (CPU presets, 2026-12-02): learning BYOL, SimSiam and DINO runs
    have embeddings of rank 5-18 of 256-1024 while their backbone keeps 20-25 of 128;
    SimSiam without its stop-gradient drops to 2.9 and 7.8. Only the latter is collapse."""
    from engine.verdict import collapse_verdict

    ref = 512 ** -0.5
    assert collapse_verdict(0.9 * ref, ref, 17.3, 512, 2000) == "dimensional"  # alone
    for rank, dim, f_rank in ((17.8, 256, 25.2), (17.3, 512, 24.6), (5.4, 1024, 24.3)):
        assert collapse_verdict(0.9 * dim ** -0.5, dim ** -0.5, rank, dim, 2000, f_rank,
                                128) == "healthy"
    assert collapse_verdict(0.8 * ref, ref, 2.9, 512, 2000, 7.8, 128) == "dimensional"
    assert collapse_verdict(0.01 * ref, ref, 2.9, 512, 2000, 70.0, 128) == "complete"
    # a small set bounds both ranks by its size
    assert collapse_verdict(0.9 * ref, ref, 3.0, 512, 25, 3.0, 128) == "healthy"
    assert collapse_verdict(0.9 * ref, ref, 1.2, 512, 25, 1.2, 128) == "dimensional"
