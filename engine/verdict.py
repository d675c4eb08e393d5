"""Collapse verdicts from the per-dim std and effective rank, and their explanations.

Torch-free on purpose: the GUI draws verdict thresholds and text before torch is imported.
"""

from __future__ import annotations

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


def collapse_verdict(std: float, std_reference: float, rank: float, dim: int, n: int) -> str:
    """'healthy', 'dimensional' or 'complete', from the per-dim std and the effective rank.

    Thresholds: complete if ``std < 0.2 / sqrt(d)``; dimensional if the effective rank is
    below 10 % of ``min(n, d)`` (the most it can be for n samples in d dimensions).
    """
    if std < COMPLETE_STD_FRACTION * std_reference:
        return "complete"
    if rank < max(1.5, DIMENSIONAL_RANK_FRACTION * min(n, dim)):
        return "dimensional"
    return "healthy"


def explain_collapse(verdict: str, cfg: object) -> str:
    """The verdict in plain words, naming the run's collapse switches that are turned on
    (settings marked ``collapse=`` that differ from the method's defaults) as the likely
    cause, with the fix."""
    from engine.config import default_config

    text = VERDICT_TEXT[verdict]
    if verdict == "healthy":
        return text
    defaults = default_config(cfg.method_name)  # type: ignore[attr-defined]
    causes = []
    for spec in cfg.specs():  # type: ignore[attr-defined]
        if spec.collapse and cfg.get(spec.key) != defaults.get(spec.key):  # type: ignore
            causes.append(f"{spec.key} = {cfg.get(spec.key)} (default "  # type: ignore
                          f"{defaults.get(spec.key)}): {spec.collapse}")
    if causes:
        text += " Likely cause: " + " ".join(causes) + " Fix: restore the default."
    else:
        advice = METHOD_ADVICE.get(cfg.method_name, "")  # type: ignore[attr-defined]
        text += (" No collapse switch is on. " + (advice + " " if advice else "") +
                 "In general: a lower learning rate, more warm-up, stronger augmentation "
                 "or a larger batch.")
    return text


#: Likely causes and fixes per method when collapse happens with every switch at its default.
METHOD_ADVICE = {
    "simclr": "SimCLR needs negatives: a very small batch or a temperature far from 0.1-0.5 "
    "weakens them.",
    "moco": "Check the temperature (0.1-0.2) and that the queue is large compared with the "
    "batch; a key momentum near 1 with few steps leaves the keys random.",
    "byol": "BYOL relies on the predictor learning faster than the target moves: keep the "
    "base momentum high (0.99-0.996), the predictor's learning-rate multiplier "
    "(method.predictor_lr_mult) near 10, and do not lower the predictor's width.",
    "simsiam": "SimSiam is sensitive to the learning rate (the paper keeps the predictor's "
    "fixed) and to weight decay; lower optim.lr first, and keep the predictor learning "
    "faster than the encoder (method.predictor_lr_mult, 20 by default).",
    "barlow_twins": "Lower lambda (off-diagonal weight) if the on-diagonal term never falls; "
    "a wider projector helps.",
    "vicreg": "Raise the variance weight (25 in the paper) relative to invariance.",
    "dino": "Balance centering and sharpening: a teacher temperature too high makes the "
    "outputs uniform, too low one-hot; a slower teacher (momentum closer to 1) stabilises.",
    "triplet": "Hard negatives early in training collapse triplet losses: use random "
    "negatives or a smaller margin.",
    "rotation": "Rotation prediction has no signal on images without an upright "
    "orientation (built-in shapes with data.shapes_orientation = any): check that the "
    "pretext accuracy rises above chance.",
    "mae": "No loss term spreads MAE's features: a low effective rank of the pooled "
    "features is common early in MAE training and not by itself a failure (He et al. 2022 "
    "report they need long training or fine-tuning to become linearly separable); judge "
    "the run by its reconstructions, and train longer.",
    "inpainting": "No loss term spreads a reconstruction method's features; a low rank "
    "early is common. Judge the run by its reconstructions, and train longer.",
    "denoising": "No loss term spreads a reconstruction method's features; a low rank "
    "early is common. Judge the run by its reconstructions; stronger noise makes the "
    "task less trivial.",
    "colorization": "No loss term spreads a reconstruction method's features; a low rank "
    "early is common. Judge the run by its colours; class rebalancing counters greyish "
    "output.",
}
