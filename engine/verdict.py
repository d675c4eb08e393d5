"""Collapse verdicts from the per-dim std and effective rank, and their explanations.

Torch-free on purpose: the GUI draws verdict thresholds and text before torch is imported.
"""

from __future__ import annotations

from collections.abc import Mapping

#: below this fraction of 1/sqrt(d), the per-dim std says every input maps to (nearly)
#: the same point: complete collapse
COMPLETE_STD_FRACTION = 0.2
#: below this fraction of min(n, d), the effective rank says the embedding uses only a
#: few directions even if its std looks fine: dimensional collapse (Jing et al. 2022)
DIMENSIONAL_RANK_FRACTION = 0.1

VERDICT_TEXT = {
    "healthy": "Healthy: the embedding is spread out and uses many directions.",
    "dimensional": "Dimensional collapse: the embedding uses only a few directions "
    "(low effective rank), even though its spread looks fine.",
    "complete": "Complete collapse: every image maps to nearly the same point (per-dim "
    "std near 0); the loss can still look fine.",
}

#: the same verdicts in the words of text (document embeddings). A contextual encoder's
#: embeddings crowding into a narrow cone is what Ethayarajh (2019, "How Contextual are
#: Contextualized Word Representations?") calls anisotropy: the text form of dimensional
#: collapse, measured by the same thresholds and shown with the mean cosine similarity
#: between documents (``anisotropy`` in the monitor rows).
VERDICT_TEXT_FOR_TEXT = {
    "healthy": "Healthy: the document embeddings are spread out and use many directions.",
    "dimensional": "Anisotropy (dimensional collapse): the document embeddings crowd into "
    "a few directions (low effective rank), so documents look alike to kNN even when the "
    "loss falls.",
    "complete": "Complete collapse: every document maps to nearly the same point (per-dim "
    "std near 0, mean cosine similarity near 1); the loss can still look fine.",
}


#: a verdict inside a sentence (the demo cards, the not-learning message)
VERDICT_WORDS = {
    "complete": "complete collapse (every image gets nearly the same embedding)",
    "dimensional": "dimensional collapse (the embeddings use only a few directions)",
    "healthy": "healthy",
}


def verdict_text(verdict: str, modality: str = "image") -> str:
    """The verdict's sentence for images or for text."""
    return (VERDICT_TEXT_FOR_TEXT if modality == "text" else VERDICT_TEXT)[verdict]


def collapse_verdict(std: float, std_reference: float, rank: float, dim: int, n: int,
                     backbone_rank: float | None = None, backbone_dim: int | None = None
                     ) -> str:
    """'healthy', 'dimensional' or 'complete', from the per-dim std and the effective rank.

    Thresholds: complete if the embedding's ``std < 0.2 / sqrt(d)``; dimensional if its
    effective rank is below 10 % of ``min(n, d)`` (the most it can be for n samples in d
    dimensions) and, where the backbone's rank is given, the backbone features' rank is
    below 10 % of ``min(n, backbone_dim)`` too. A projector narrows what it is given: the
    embedding of a learning BYOL, SimSiam or DINO run on the CPU preset uses 5-18 of its
    256-1024 directions while the backbone keeps 20-25 of 128 (shapes, 2026-12-02), which
    is the projector doing its job (Bordes et al. 2023, "Guillotine Regularization": the
    layers after the representation absorb the task's invariances, which is why they are
    thrown away). The representation the probes and kNN read has collapsed only when the
    backbone's rank is low as well (RankMe, Garrido et al. 2023, measures that rank).
    """
    def few_directions(r: float, d: int) -> bool:
        return r < max(1.5, DIMENSIONAL_RANK_FRACTION * min(n, d))

    if std < COMPLETE_STD_FRACTION * std_reference:
        return "complete"
    if not few_directions(rank, dim):
        return "healthy"
    if backbone_rank is not None and backbone_dim and not few_directions(backbone_rank,
                                                                         backbone_dim):
        return "healthy"
    return "dimensional"


def tower_verdict(extra: Mapping[str, float], prefix: str = "text_") -> str | None:
    """The verdict of a second tower from its scores in a monitor row's extra keys
    (``prefix`` + std, std_reference, effective_rank, dim, count; written by
    ``engine.monitoring.tower_scores``), or None when the row has none. Recomputed from
    the numbers rather than logged, so every reader agrees with :func:`collapse_verdict`."""
    keys = [prefix + k for k in ("std", "std_reference", "effective_rank", "dim", "count")]
    if not all(k in extra for k in keys):
        return None
    std, ref, rank, dim, n = (float(extra[k]) for k in keys)
    return collapse_verdict(std, ref, rank, int(dim), int(n))


#: the share of a run after which a kNN accuracy still at the random encoder's is called
#: out (the first monitor steps of most methods sit near the baseline)
FAIR_SHARE = 0.3
#: kNN accuracy within this of the random-init baseline counts as no better than it
NOT_LEARNING_MARGIN = 0.01


#: families whose features can separate classes linearly while their kNN stays low
LINEAR_READOUT_FAMILIES = ("pretext", "reconstruction")


def not_learning_message(baseline_knn: float | None, knn: float | None, step: int,
                         total_steps: int, family: str | None = None,
                         verdict: str = "healthy") -> str | None:
    """Plain words when, after a fair share of the run, the trained encoder's kNN accuracy
    is no better than the random encoder's (its BatchNorm calibrated on the same data):
    the training has not made the features better than none, however the loss looks.
    None while it is too early to say, or when the run beats its baseline.

    For pretext and reconstruction methods (``family``) it adds that a linear probe may
    still find the classes: their features are not trained to put similar images close
    (He et al. 2022 evaluate MAE by linear probe and fine-tuning), and on the built-in
    digits jigsaw's and denoising's kNN ends below the random encoder's while their probe
    gains 9-13 points (README). It suggests no longer schedule to them: with 2-4 times
    the steps (bfloat16) their kNN on digits fell further (jigsaw +1.2 to -3.4 points,
    denoising +1.6 to -3.7) while the probe rose.

    When the collapse ``verdict`` is not healthy, the collapse is the reason given: no
    schedule or crop helps while every image gets (nearly) the same embedding."""
    if baseline_knn is None or knn is None or total_steps <= 0:
        return None
    if step < FAIR_SHARE * total_steps or knn > baseline_knn + NOT_LEARNING_MARGIN:
        return None
    head = (f"Not learning yet: after {step} of {total_steps} steps the encoder's kNN "
            f"accuracy ({knn:.1%}) is no better than a random encoder's ({baseline_knn:.1%}, "
            "its BatchNorm calibrated on this data), so the training has not made the "
            "features better than none, whatever the loss says. ")
    if verdict in ("complete", "dimensional"):
        return head + (f"The reason is {VERDICT_WORDS[verdict]}: the Collapse tab names its "
                       "likely cause; a longer schedule will not undo it.")
    if family in LINEAR_READOUT_FAMILIES:
        return head + (
            f"A {family} method's features can separate classes linearly while their "
            "nearest neighbours do not: the linear probe (Evaluate tab, or python -m "
            "engine eval RUN --protocols linear) tells whether this run learned. A longer "
            "schedule solves its task better, which need not bring similar images closer; "
            "for that, try a joint-embedding method (SimCLR and VICReg learn fastest on "
            "small budgets), a milder crop (a higher augment.crop_min_scale) or a higher "
            "data.resolution for small objects.")
    return head + ("Try a longer schedule, a milder crop (a higher augment.crop_min_scale), "
                   "a higher data.resolution for small objects, or another method (SimCLR "
                   "and VICReg learn fastest on small budgets).")
