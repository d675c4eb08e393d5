"""The collapse dashboard on its own, fed constructed monitor reports."""

from __future__ import annotations

import torch

from app.panels.collapse import N_SPECTRA, CollapsePanel
from engine.events import MonitorReport
from engine.monitor import (
    alignment,
    collapse_std,
    collapse_verdict,
    effective_rank,
    spectrum,
    uniformity,
)


def report(step: int, z: torch.Tensor) -> MonitorReport:
    d = z.shape[1]
    std, ref, rank = collapse_std(z), d ** -0.5, effective_rank(z)
    return MonitorReport(step=step, epoch=0.0, baseline=step == 0, knn_accuracy=None,
                         std=std, std_reference=ref, effective_rank=rank, dim=d,
                         backbone_rank=rank, backbone_dim=d,
                         verdict=collapse_verdict(std, ref, rank, d, z.shape[0]),
                         spectrum=tuple(spectrum(z)), alignment=alignment(z, z),
                         uniformity=uniformity(z))


def test_verdicts_turn_the_light_and_explain(qtbot):
    panel = CollapsePanel()
    qtbot.addWidget(panel)
    seen = []
    panel.explainer = lambda v: seen.append(v) or f"explained {v}"
    g = torch.Generator().manual_seed(0)
    panel.add_report(report(0, torch.randn(500, 64, generator=g)))
    assert panel.verdict == "healthy" and "#2ca02c" in panel.light.styleSheet()
    low = torch.randn(500, 3, generator=g) @ torch.randn(3, 64, generator=g)
    panel.add_report(report(25, low))
    assert panel.verdict == "dimensional" and "#e69500" in panel.light.styleSheet()
    assert panel.explanation.text() == "explained dimensional"
    panel.add_report(report(50, torch.ones(500, 64) + 1e-6 * torch.randn(500, 64)))
    assert panel.verdict == "complete" and "#d62728" in panel.light.styleSheet()
    assert seen == ["healthy", "dimensional", "complete"]
    assert "% of d = 64" in panel.numbers["rank"].text()
    assert panel.numbers["uniformity"].text() != "–"
    # the header keeps the step the verdict changed; the numbers follow the latest report
    collapsed = torch.ones(500, 64) + 1e-3 * torch.randn(500, 64, generator=g)
    before = panel.numbers["std"].text()
    panel.add_report(report(75, collapsed))
    assert "since step 50" in panel.verdict_label.text()
    assert panel.numbers["std"].text() != before


def test_spectra_fade_and_curves_fill(qtbot):
    panel = CollapsePanel()
    qtbot.addWidget(panel)
    g = torch.Generator().manual_seed(1)
    for i in range(12):
        panel.add_report(report(25 * i, torch.randn(300, 32, generator=g)))
    assert len(panel.spectra) == N_SPECTRA + 1
    drawn = [c for c in panel.spectrum_curves if c.getData()[0] is not None
             and len(c.getData()[0])]
    assert len(drawn) == N_SPECTRA
    alphas = [c.opts["pen"].color().alpha() for c in panel.spectrum_curves]
    assert alphas == sorted(alphas)  # older spectra fainter
    x, y = panel.rank_curve.getData()
    assert len(x) == 12 and all(0 < v <= 1 for v in y)


def test_reopened_rows_replay(qtbot):
    panel = CollapsePanel()
    qtbot.addWidget(panel)
    rows = [{"step": 0, "std": 0.1, "std_reference": 0.125, "effective_rank": 50.0,
             "backbone_rank": 40.0, "verdict": "healthy", "spectrum": [-1.0] * 64,
             "alignment": 1.0, "uniformity": -3.0, "baseline": True},
            {"step": 5, "loss": 3.0},
            {"step": 25, "std": 0.01, "std_reference": 0.125, "effective_rank": 2.0,
             "backbone_rank": 3.0, "verdict": "complete", "spectrum": [-1.0] * 64,
             "alignment": 0.0, "uniformity": -0.01}]
    panel.load_rows(rows)
    assert panel.verdict == "complete" and len(panel.std_curve.getData()[0]) == 2


def test_anisotropy_is_shown_and_plotted_for_text_runs_and_replays(qtbot):
    """Text runs have no two views (alignment None): their dashboard still plots how far
    the document embeddings crowd into one direction (the mean cosine between two)."""
    from dataclasses import replace

    from engine.monitor import anisotropy

    panel = CollapsePanel()
    qtbot.addWidget(panel)
    g = torch.Generator().manual_seed(2)
    spread = torch.randn(400, 32, generator=g)
    cone = spread * 0.1 + torch.ones(32)  # every row near one direction
    for step, z in ((0, spread), (50, cone)):
        panel.add_report(replace(report(step, z), alignment=None,
                                 extra={"anisotropy": anisotropy(z)}))
    x, y = panel.aniso_curve.getData()
    assert list(x) == [0, 50] and y[0] < 0.05 < 0.9 < y[1]
    assert panel.numbers["anisotropy"].text() == f"{anisotropy(cone):.3f}"
    assert panel.numbers["alignment"].text() == "–"

    reopened = CollapsePanel()
    qtbot.addWidget(reopened)
    reopened.load_rows([{"step": 0, "std": 0.1, "std_reference": 0.125,
                         "effective_rank": 50.0, "backbone_rank": 40.0, "verdict": "healthy",
                         "spectrum": [-1.0] * 64, "uniformity": -3.0, "baseline": True,
                         "anisotropy": 0.42}])
    assert list(reopened.aniso_curve.getData()[1]) == [0.42]
