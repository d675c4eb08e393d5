"""The collapse dashboard: is the embedding alive, at a glance.

A traffic-light verdict (healthy / dimensional collapse / complete collapse) with its
plain-language explanation, the numbers behind it (per-dim std against 1/sqrt(d),
effective rank as a number and a fraction of d, alignment and uniformity), and the
mean cosine between samples
(anisotropy, Ethayarajh 2019: the text form of dimensional collapse), and the
log singular-value spectrum of the embedding redrawn at every monitor step with earlier
spectra fading out (Jing et al. 2022: dimensional collapse is a cliff in the tail).
An image-text run (CLIP) has a second tower: its captions' joint-space scores (the
``text_*`` keys of the monitor rows) get a verdict line of their own, recomputed from the
numbers by :func:`engine.verdict.tower_verdict`, and std / rank curves beside the image
tower's, since either tower can collapse while the other looks fine. Thresholds are
:data:`engine.monitor.COMPLETE_STD_FRACTION` and
:data:`engine.monitor.DIMENSIONAL_RANK_FRACTION`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.panels.training_plots import Series
from engine.events import MonitorReport, RunStarted, replay
from engine.verdict import (
    COMPLETE_STD_FRACTION,
    DIMENSIONAL_RANK_FRACTION,
    VERDICT_TEXT,
    tower_verdict,
)

COLOURS = {"healthy": "#2ca02c", "dimensional": "#e69500", "complete": "#d62728"}
NAMES = {"healthy": "Healthy", "dimensional": "Dimensional collapse",
         "complete": "Complete collapse"}
N_SPECTRA = 8  # the newest spectrum and this many faded earlier ones
TEXT_COLOUR = "#1f77b4"  # the text tower's curves


class CollapsePanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.explainer: Callable[[str], str] | None = None  # set by the main window
        self.verdict: str | None = None
        self.last: MonitorReport | None = None
        self.spectra: list[tuple[int, np.ndarray]] = []
        self.series = {k: Series() for k in ("std", "ref", "rank_frac", "alignment",
                                              "uniformity", "anisotropy", "text_std",
                                              "text_ref", "text_rank_frac")}
        self.text_verdict: str | None = None  # the text tower's, for image-text runs

        self.light = QLabel("●")
        self.light.setObjectName("collapseLight")
        self.verdict_label = QLabel("No measurements yet")
        self.verdict_label.setObjectName("collapseVerdict")
        self.explanation = QLabel("The verdict appears with the first monitor step (the "
                                  "random-initialisation baseline, before step 1).")
        self.explanation.setWordWrap(True)
        head = QHBoxLayout()
        head.addWidget(self.light)
        head.addWidget(self.verdict_label, 1)
        # the text tower of an image-text run: shown with its first scores
        self.text_light = QLabel("●")
        self.text_light.setObjectName("collapseLight")
        self.text_verdict_label = QLabel("")
        self.text_verdict_label.setObjectName("collapseVerdict")
        self.text_numbers = QLabel("")
        self.text_numbers.setObjectName("numberValue")
        self.text_numbers.setWordWrap(True)
        text_head = QHBoxLayout()
        text_head.addWidget(self.text_light)
        text_head.addWidget(self.text_verdict_label)
        text_head.addWidget(self.text_numbers, 1)
        self.text_row = QWidget()
        self.text_row.setLayout(text_head)
        text_head.setContentsMargins(0, 0, 0, 0)
        self.text_row.setVisible(False)

        self.numbers: dict[str, QLabel] = {}
        grid = QGridLayout()
        for i, (key, title) in enumerate([
                ("std", "per-dim std"), ("rank", "effective rank"),
                ("backbone_rank", "backbone rank"), ("alignment", "alignment"),
                ("uniformity", "uniformity"), ("anisotropy", "anisotropy")]):
            t = QLabel(title)
            t.setObjectName("numberTitle")
            v = QLabel("–")
            v.setObjectName("numberValue")
            grid.addWidget(t, 0, i)
            grid.addWidget(v, 1, i)
            self.numbers[key] = v
        thresholds = QLabel(
            f"Complete collapse when per-dim std < {COMPLETE_STD_FRACTION:g} / √d; "
            f"dimensional collapse when the effective rank < {DIMENSIONAL_RANK_FRACTION:.0%} "
            "of min(images, d), for the embedding and for the backbone features (a projector "
            "narrows what it is given; the backbone is what kNN reads). Alignment: mean "
            "‖z₁ − z₂‖² over two views (0 best); "
            "uniformity: log E exp(−2‖zᵢ − zⱼ‖²) (0 = one point, about −4 = spread out); "
            "anisotropy: mean cosine between two samples' backbone features (1 = all point "
            "one way; text models' documents often crowd into a narrow cone).")
        thresholds.setWordWrap(True)
        thresholds.setObjectName("hint")

        pg.setConfigOptions(antialias=True)
        self.spectrum_plot = self._plot("Spectrum of the embedding (log₁₀ eigenvalues)",
                                        "log₁₀ λ", "index")
        self.spectrum_curves: list[pg.PlotDataItem] = [
            self.spectrum_plot.plot(pen=pg.mkPen((214, 39, 40, 30 + 25 * i), width=1))
            for i in range(N_SPECTRA)]
        self.spectrum_now = self.spectrum_plot.plot(pen=pg.mkPen("#d62728", width=2.5))
        self.std_plot = self._plot("Per-dim std vs 1/√d", "std", "step")
        dots = {"symbol": "o", "symbolSize": 5}
        self.std_curve = self.std_plot.plot(pen=pg.mkPen("#d62728", width=2), name="std",
                                            symbolBrush="#d62728", symbolPen=None, **dots)
        self.ref_curve = self.std_plot.plot(
            pen=pg.mkPen("#7f7f7f", width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine),
            name="1/√d")
        self.rank_plot = self._plot("Effective rank / d", "fraction", "step")
        self.rank_plot.setYRange(0, 1)
        self.rank_curve = self.rank_plot.plot(pen=pg.mkPen("#2ca02c", width=2),
                                              symbolBrush="#2ca02c", symbolPen=None, **dots)
        # the text tower's curves join the legends only when a run has one
        self.text_std_curve = self.std_plot.plot(
            pen=pg.mkPen(TEXT_COLOUR, width=2), symbol="t1", symbolSize=6,
            symbolBrush=TEXT_COLOUR, symbolPen=None)
        self.text_ref_curve = self.std_plot.plot(
            pen=pg.mkPen(TEXT_COLOUR, width=1, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.text_rank_curve = self.rank_plot.plot(
            pen=pg.mkPen(TEXT_COLOUR, width=2), symbol="t1", symbolSize=6,
            symbolBrush=TEXT_COLOUR, symbolPen=None)
        self._text_legend = False
        self.au_plot = self._plot("Alignment, uniformity and anisotropy", "", "step")
        self.align_curve = self.au_plot.plot(pen=pg.mkPen("#1f77b4", width=2),
                                             name="alignment", symbolBrush="#1f77b4",
                                             symbolPen=None, **dots)
        self.unif_curve = self.au_plot.plot(pen=pg.mkPen("#9467bd", width=2),
                                            name="uniformity", symbolBrush="#9467bd",
                                            symbolPen=None, **dots)
        self.aniso_curve = self.au_plot.plot(pen=pg.mkPen("#8c564b", width=2),
                                             name="anisotropy", symbolBrush="#8c564b",
                                             symbolPen=None, **dots)

        plots = pg.GraphicsLayoutWidget()
        plots.setBackground("w")
        plots.addItem(self.spectrum_plot, 0, 0, 1, 1)
        plots.addItem(self.std_plot, 0, 1)
        plots.addItem(self.rank_plot, 1, 0)
        plots.addItem(self.au_plot, 1, 1)
        self.plots = plots

        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addWidget(self.text_row)
        lay.addWidget(self.explanation)
        lay.addLayout(grid)
        lay.addWidget(thresholds)
        lay.addWidget(plots, 1)
        self._set_light(None)

    @staticmethod
    def _plot(title: str, left: str, bottom: str) -> pg.PlotItem:
        p = pg.PlotItem(title=title)
        p.setLabel("left", left)
        p.setLabel("bottom", bottom)
        p.showGrid(x=True, y=True, alpha=0.3)
        p.addLegend(offset=(-10, 10))
        return p

    def _set_light(self, verdict: str | None, light: QLabel | None = None) -> None:
        colour = COLOURS.get(verdict or "", "#bbbbbb")
        (light or self.light).setStyleSheet(f"color: {colour}; font-size: 30px;")

    # events -----------------------------------------------------------------------------
    def add_event(self, e: object) -> None:
        if isinstance(e, RunStarted) and e.start_step == 0:
            self.clear()
        elif isinstance(e, MonitorReport):
            self.add_report(e)

    def add_report(self, e: MonitorReport) -> None:
        self.last = e
        s = self.series
        s["std"].append(e.step, e.std)
        s["ref"].append(e.step, e.std_reference)
        if e.dim:
            s["rank_frac"].append(e.step, e.effective_rank / e.dim)
        if e.alignment is not None:
            s["alignment"].append(e.step, e.alignment)
        if e.uniformity is not None:
            s["uniformity"].append(e.step, e.uniformity)
        aniso = e.extra.get("anisotropy")
        if aniso is not None:
            s["anisotropy"].append(e.step, float(aniso))
        if e.spectrum:
            self.spectra.append((e.step, np.asarray(e.spectrum)))
            self.spectra = self.spectra[-(N_SPECTRA + 1):]
        self._show_numbers(e)
        self._add_text_tower(e)
        if e.verdict != self.verdict:
            self.verdict = e.verdict
            self._set_light(e.verdict)
            # the step the verdict changed; the numbers below follow every monitor step
            self.verdict_label.setText(f"{self._tower('Image')}<b>{NAMES[e.verdict]}</b> "
                                       f"(since step {e.step})")
            text = VERDICT_TEXT[e.verdict]
            if self.explainer is not None:
                try:
                    text = self.explainer(e.verdict)
                except Exception:  # noqa: BLE001 - an explanation must never break the view
                    pass
            self.explanation.setText(text)
        self.refresh()

    def _tower(self, name: str) -> str:
        """"Image tower: " before the first verdict when the run has two towers."""
        return f"{name} tower: " if self._text_legend else ""

    def _add_text_tower(self, e: MonitorReport) -> None:
        """The text tower's verdict, numbers and curve points, when the report has them."""
        verdict = tower_verdict(e.extra)
        if verdict is None:
            return
        x = e.extra
        std, ref, rank, dim = (float(x[k]) for k in ("text_std", "text_std_reference",
                                                     "text_effective_rank", "text_dim"))
        s = self.series
        s["text_std"].append(e.step, std)
        s["text_ref"].append(e.step, ref)
        if dim:
            s["text_rank_frac"].append(e.step, rank / dim)
        if not self._text_legend:  # the first text scores: name both towers' curves
            self._text_legend = True
            self.text_row.setVisible(True)
            self.std_plot.legend.getLabel(self.std_curve).setText("image std")
            self.std_plot.legend.addItem(self.text_std_curve, "text std")
            self.rank_plot.legend.addItem(self.rank_curve, "image")
            self.rank_plot.legend.addItem(self.text_rank_curve, "text")
            if self.verdict is not None:  # set by reports before this one
                self.verdict_label.setText("Image tower: " + self.verdict_label.text())
        frac = f" ({rank / dim:.0%} of d = {dim:.0f})" if dim else ""
        aniso = x.get("text_anisotropy")
        more = "" if aniso is None else f"; anisotropy {float(aniso):.3f}"
        self.text_numbers.setText(f"per-dim std {std:.4f} (1/√d = {ref:.4f}); "
                                  f"effective rank {rank:.1f}{frac}{more}")
        if verdict != self.text_verdict:
            self.text_verdict = verdict
            self._set_light(verdict, self.text_light)
            self.text_verdict_label.setText(f"Text tower: <b>{NAMES[verdict]}</b> "
                                            f"(since step {e.step})")
            self.text_row.setToolTip(VERDICT_TEXT[verdict].replace("image", "caption"))

    def _show_numbers(self, e: MonitorReport) -> None:
        n = self.numbers
        n["std"].setText(f"{e.std:.4f} (1/√d = {e.std_reference:.4f})")
        frac = f" ({e.effective_rank / e.dim:.0%} of d = {e.dim})" if e.dim else ""
        n["rank"].setText(f"{e.effective_rank:.1f}{frac}")
        bfrac = f" / {e.backbone_dim}" if e.backbone_dim else ""
        n["backbone_rank"].setText(f"{e.backbone_rank:.1f}{bfrac}")
        n["alignment"].setText("–" if e.alignment is None else f"{e.alignment:.3f}")
        n["uniformity"].setText("–" if e.uniformity is None else f"{e.uniformity:.3f}")
        aniso = e.extra.get("anisotropy")
        n["anisotropy"].setText("–" if aniso is None else f"{float(aniso):.3f}")

    def load_rows(self, rows: list[dict[str, Any]]) -> None:
        """Replay a run's monitor rows from ``metrics.jsonl`` (reopen, resume)."""
        for e in replay(rows):
            if isinstance(e, MonitorReport):
                self.add_report(e)

    def clear(self) -> None:
        self.verdict = None
        self.text_verdict = None
        self.last = None
        if self._text_legend:
            self._text_legend = False
            self.std_plot.legend.getLabel(self.std_curve).setText("std")
            for plot, curve in ((self.std_plot, self.text_std_curve),
                                (self.rank_plot, self.rank_curve),
                                (self.rank_plot, self.text_rank_curve)):
                plot.legend.removeItem(curve)
        self.text_row.setVisible(False)
        self.text_numbers.setText("")
        self.text_verdict_label.setText("")
        self._set_light(None, self.text_light)
        self.spectra.clear()
        for s in self.series.values():
            s.clear()
        for v in self.numbers.values():
            v.setText("–")
        self._set_light(None)
        self.verdict_label.setText("No measurements yet")
        self.refresh()

    def refresh(self) -> None:
        s = self.series
        self.std_curve.setData(s["std"].x, s["std"].y)
        self.ref_curve.setData(s["ref"].x, s["ref"].y)
        self.rank_curve.setData(s["rank_frac"].x, s["rank_frac"].y)
        self.align_curve.setData(s["alignment"].x, s["alignment"].y)
        self.unif_curve.setData(s["uniformity"].x, s["uniformity"].y)
        self.aniso_curve.setData(s["anisotropy"].x, s["anisotropy"].y)
        self.text_std_curve.setData(s["text_std"].x, s["text_std"].y)
        self.text_rank_curve.setData(s["text_rank_frac"].x, s["text_rank_frac"].y)
        # the reference line twice only when the towers' widths differ
        tr, r = s["text_ref"], s["ref"]
        same = not tr.n or (r.n > 0 and bool(np.allclose(tr.y, r.y[-1])))
        self.text_ref_curve.setData([] if same else s["text_ref"].x,
                                    [] if same else s["text_ref"].y)
        older = self.spectra[:-1][-N_SPECTRA:]
        for i, curve in enumerate(self.spectrum_curves):
            j = i - (N_SPECTRA - len(older))  # the newest of the older ones is least faded
            if 0 <= j < len(older):
                curve.setData(older[j][1])
            else:
                curve.setData([], [])
        if self.spectra:
            self.spectrum_now.setData(self.spectra[-1][1])
        else:
            self.spectrum_now.setData([], [])
