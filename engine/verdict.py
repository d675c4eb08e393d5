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
