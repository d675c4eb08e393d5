"""Live training curves: loss, collapse score, effective rank, kNN accuracy.

Plots are created once and updated with ``setData`` from a timer at a bounded rate
(pyqtgraph's scrolling-plot pattern), however fast events arrive. The panel takes plain
engine events, so it runs on its own with fake events in tests.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

from engine.events import MonitorReport, StepMetrics, replay

PALETTE = {
    "loss": "#1f77b4",
    "loss_raw": "#aec7e8",
    "std": "#d62728",
    "ref": "#7f7f7f",
    "rank": "#2ca02c",
    "backbone_rank": "#98df8a",
    "knn": "#9467bd",
    "baseline": "#ff7f0e",
}


EXTRA_COLORS = ["#17becf", "#bcbd22", "#e377c2", "#8c564b", "#7f7f7f", "#1f77b4",
                "#ff7f0e", "#2ca02c"]


class Series:
    """A growing x/y buffer backed by a numpy array (amortised O(1) appends)."""

    def __init__(self) -> None:
        self._x = np.empty(1024)
        self._y = np.empty(1024)
        self.n = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._x):
            self._x = np.resize(self._x, 2 * self.n)
            self._y = np.resize(self._y, 2 * self.n)
        self._x[self.n] = x
        self._y[self.n] = y
        self.n += 1

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]

    def clear(self) -> None:
        self.n = 0


class TrainingPlots(QWidget):
    """Four linked plots sharing the step axis."""

    REFRESH_MS = 200

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # antialiasing only on the sparse monitor curves: on a dense loss curve it costs
        # most of the paint time, and painting happens on the GUI thread
        pg.setConfigOptions(antialias=False, background="w", foreground="#333")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.layout_widget = pg.GraphicsLayoutWidget()
        lay.addWidget(self.layout_widget)
        self.series: dict[str, Series] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._dirty: set[str] = set()
        self._ema: float | None = None
        self.baseline_knn: float | None = None

        lw = self.layout_widget
        self.loss_plot = self._plot(0, 0, "Loss", "loss")
        self._curve("loss_raw", self.loss_plot, PALETTE["loss_raw"], 1, "loss")
        self._curve("loss", self.loss_plot, PALETTE["loss"], 2, "smoothed")
        self.knn_plot = self._plot(0, 1, "kNN accuracy (monitor set)", "accuracy")
        self._curve("knn", self.knn_plot, PALETTE["knn"], 2, "trained", symbol=True)
        self.baseline_line = pg.InfiniteLine(
            angle=0, movable=False,
            pen=pg.mkPen(PALETTE["baseline"], width=2, style=pg.QtCore.Qt.PenStyle.DashLine),
            label="random init {value:.1%}",
            labelOpts={"position": 0.75, "color": PALETTE["baseline"], "movable": False,
                       "anchors": [(0.5, 0), (0.5, 0)]},
        )
        self.baseline_line.hide()
        self.knn_plot.addItem(self.baseline_line)
        self.knn_plot.setYRange(0, 1)
        self.std_plot = self._plot(1, 0, "Collapse: per-dim std of normalised embedding", "std")
        self._curve("std", self.std_plot, PALETTE["std"], 2, "std", symbol=True)
        self.ref_line = pg.InfiniteLine(
            angle=0, movable=False,
            pen=pg.mkPen(PALETTE["ref"], width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine),
            label="1/√d = {value:.3f}",
            labelOpts={"position": 0.75, "color": PALETTE["ref"], "movable": False,
                       "anchors": [(0.5, 0), (0.5, 0)]},
        )
        self.ref_line.hide()
        self.std_plot.addItem(self.ref_line)
        self.rank_plot = self._plot(1, 1, "Effective rank (RankMe)", "rank")
        self._curve("rank", self.rank_plot, PALETTE["rank"], 2, "projector", symbol=True)
        self._curve("backbone_rank", self.rank_plot, PALETTE["backbone_rank"], 2, "backbone",
                    symbol=True)
        # created on the first method-specific metric (hidden plot items with legends
        # break pyqtgraph's teardown), removed again by clear()
        self.method_plot: pg.PlotItem | None = None
        # no setXLink: linked axes would re-lay-out and repaint every plot on each loss
        # update, which is most of the GUI thread's time during a run
        lw.ci.layout.setSpacing(6)

        self.timer = QTimer(self)
        self.timer.setInterval(self.REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def _plot(self, row: int, col: int, title: str, ylabel: str, colspan: int = 1
              ) -> pg.PlotItem:
        p = self.layout_widget.addPlot(row=row, col=col, colspan=colspan, title=title)
        p.setLabel("bottom", "step")
        p.setLabel("left", ylabel)
        p.getAxis("left").enableAutoSIPrefix(False)
        p.getAxis("bottom").enableAutoSIPrefix(False)
        p.showGrid(x=True, y=True, alpha=0.25)
        p.setClipToView(True)
        p.setDownsampling(auto=True, mode="peak")
        p.addLegend(offset=(-10, 10))
        return p

    def _curve(self, key: str, plot: pg.PlotItem, color: str, width: float, name: str,
               symbol: bool = False) -> None:
        kw: dict[str, Any] = {"pen": pg.mkPen(color, width=width), "name": name}
        if symbol:
            kw.update(symbol="o", symbolSize=5, symbolBrush=color, symbolPen=None,
                      antialias=True)
        self.curves[key] = plot.plot([], [], **kw)
        self.series[key] = Series()

    # events ------------------------------------------------------------------------
    def clear(self) -> None:
        for key in [k for k in self.curves if k.startswith("extra:")]:
            del self.curves[key], self.series[key]
        if self.method_plot is not None:
            self.layout_widget.removeItem(self.method_plot)
            self.method_plot = None
        for s in self.series.values():
            s.clear()
        self._ema = None
        self.baseline_knn = None
        self.baseline_line.hide()
        self.ref_line.hide()
        self._dirty = set(self.curves)
        self.refresh()

    def add_event(self, e: object) -> None:
        if isinstance(e, StepMetrics):
            self.add_step(e.step, e.loss)
            if e.extra:
                self.add_extra(e.step, e.extra)
        elif isinstance(e, MonitorReport):
            self.add_monitor(e)

    def add_extra(self, step: int, extra: dict[str, float]) -> None:
        """Method-specific metrics (loss terms, target momentum, output std): one curve
        each, created the first time a name appears."""
        for name, value in extra.items():
            if not math.isfinite(value):
                continue
            key = f"extra:{name}"
            if key not in self.curves:
                if self.method_plot is None:
                    self.method_plot = self._plot(2, 0, "Method metrics", "value", colspan=2)
                color = EXTRA_COLORS[(len(self.curves) - len(PALETTE)) % len(EXTRA_COLORS)]
                self._curve(key, self.method_plot, color, 1.5, name)
            self.series[key].append(step, value)
            self._dirty.add(key)

    def add_step(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self._ema = loss if self._ema is None else 0.9 * self._ema + 0.1 * loss
        self.series["loss_raw"].append(step, loss)
        self.series["loss"].append(step, self._ema)
        self._dirty.update(("loss_raw", "loss"))

    def add_monitor(self, e: MonitorReport) -> None:
        if e.baseline:
            self.baseline_knn = e.knn_accuracy
            if e.knn_accuracy is not None:
                # show first: pyqtgraph does not refresh the label of a hidden line
                self.baseline_line.show()
                self.baseline_line.setValue(e.knn_accuracy)
        if e.knn_accuracy is not None:
            self.series["knn"].append(e.step, e.knn_accuracy)
        self.series["std"].append(e.step, e.std)
        self.ref_line.show()
        self.ref_line.setValue(e.std_reference)
        self.series["rank"].append(e.step, e.effective_rank)
        self.series["backbone_rank"].append(e.step, e.backbone_rank)
        self._dirty.update(("knn", "std", "rank", "backbone_rank"))

    def load_rows(self, rows: list[dict[str, Any]]) -> None:
        """Replay a run's ``metrics.jsonl`` rows (resume, reopen) into the curves."""
        for e in replay(rows):
            self.add_event(e)

    def refresh(self) -> None:
        """Push buffered points to the curves that changed; called by the timer at a
        bounded rate, so a plot repaints only when it has new points."""
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            if key in self.curves:
                s = self.series[key]
                self.curves[key].setData(s.x, s.y)

    def point_count(self, key: str) -> int:
        """How many points a curve currently shows (for tests)."""
        x, _ = self.curves[key].getData()
        return 0 if x is None else len(x)
