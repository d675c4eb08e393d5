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


def legend_names(plot) -> list[str]:
    return [label.text for _, label in plot.legend.items]


def test_a_second_tower_gets_its_own_verdict_and_curves_and_replays(qtbot):
    """An image-text run's captions (the text_* keys) get a verdict line, numbers and
    std / rank curves beside the image tower's; the text tower may collapse alone."""
    from dataclasses import replace

    from engine.monitoring import tower_scores

    panel = CollapsePanel()
    qtbot.addWidget(panel)
    g = torch.Generator().manual_seed(3)
    spread = torch.randn(300, 32, generator=g)
    text_healthy = torch.randn(300, 32, generator=g)
    text_collapsed = torch.ones(300, 32) + 1e-4 * torch.randn(300, 32, generator=g)
    reports = [replace(report(step, spread), extra={"anisotropy": 0.0,
                                                      **tower_scores(t, "text_")})
               for step, t in ((0, text_healthy), (50, text_collapsed), (100, text_collapsed))]
    panel.add_report(reports[0])
    assert panel.text_row.isVisibleTo(panel)
    assert panel.text_verdict == "healthy" and "#2ca02c" in panel.text_light.styleSheet()
    assert panel.verdict_label.text().startswith("Image tower: ")
    assert "Text tower: <b>Healthy</b>" in panel.text_verdict_label.text()
    assert "of d = 32" in panel.text_numbers.text() and "anisotropy" in panel.text_numbers.text()
    for r in reports[1:]:
        panel.add_report(r)
    assert panel.verdict == "healthy"  # the image tower is fine...
    assert panel.text_verdict == "complete"  # ...while every caption maps to one point
    assert "#d62728" in panel.text_light.styleSheet()
    assert "Complete collapse</b> (since step 50)" in panel.text_verdict_label.text()
    x, y = panel.text_std_curve.getData()
    assert list(x) == [0, 50, 100] and y[0] > 10 * y[1]
    assert len(panel.text_rank_curve.getData()[0]) == 3
    assert len(panel.std_curve.getData()[0]) == 3  # beside the image tower's
    assert legend_names(panel.std_plot) == ["image std", "1/√d", "text std"]
    assert legend_names(panel.rank_plot) == ["image", "text"]
    ref_x = panel.text_ref_curve.getData()[0]
    assert ref_x is None or not len(ref_x)  # the same width: one 1/√d line

    reopened = CollapsePanel()
    qtbot.addWidget(reopened)
    reopened.load_rows([r.to_row() for r in reports])
    assert reopened.text_verdict == "complete" and reopened.verdict == "healthy"
    assert reopened.text_row.isVisibleTo(reopened)
    assert list(reopened.text_std_curve.getData()[1]) == list(y)

    reopened.clear()  # a new run without a text tower
    assert not reopened.text_row.isVisibleTo(reopened)
    assert legend_names(reopened.std_plot) == ["std", "1/√d"]
    reopened.add_report(report(0, spread))
    assert reopened.text_verdict is None and not reopened.text_row.isVisibleTo(reopened)
    assert not reopened.verdict_label.text().startswith("Image tower")


def test_an_image_run_shows_no_text_tower(qtbot):
    panel = CollapsePanel()
    qtbot.addWidget(panel)
    panel.add_report(report(0, torch.randn(200, 16, generator=torch.Generator().manual_seed(4))))
    assert not panel.text_row.isVisibleTo(panel) and panel.text_verdict is None
    assert "text std" not in legend_names(panel.std_plot)
