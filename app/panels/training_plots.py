"""Live training curves: loss, collapse score, effective rank, kNN accuracy.

Plots are created once and updated with ``setData`` from a timer at a bounded rate
(pyqtgraph's scrolling-plot pattern), however fast events arrive. The panel takes plain
engine events, so it runs on its own with fake events in tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


#: readable legend names of method metrics (others: the key with spaces)
METRIC_NAMES = {
    "bits_per_token": "bits per token (training batches)",
    "masked_accuracy": "masked-token accuracy",
    "sentence_accuracy": "sentence-task accuracy",
    # SimCSE's two dropout views of a sentence, CLIP's image and its caption
    "positive_similarity": "similarity of matching pairs",
    "negative_similarity": "similarity of non-matching pairs",
    "temperature": "softmax temperature",
    "image_to_text_accuracy": "image picks its caption (training batch)",
    "pretext_accuracy": "pretext accuracy",
}


@dataclass(frozen=True)
class HeldOut:
    """A held-out text score of the monitor rows and the reference line it is read
    against: a language model has learned from context once its curve is past the line."""

    key: str  # MonitorReport.extra key of the curve
    title: str
    ylabel: str
    name: str
    ref_key: str  # MonitorReport.extra key of the reference (a constant of the corpus)
    ref_label: str  # InfiniteLine label format
    ref_name: str
    colour: str
    extra_curves: tuple[tuple[str, str, str], ...] = ()  # (key, legend name, colour)


HELDOUT = (
    HeldOut("heldout_bits_per_token", "Held-out bits per token (lower is better)",
            "bits / token", "held-out bits per token", "unigram_bits",
            "unigram entropy {value:.2f}", "unigram entropy (no context)", "#1f77b4"),
    HeldOut("heldout_masked_accuracy", "Held-out masked-token accuracy (higher is better)",
            "accuracy", "held-out masked accuracy", "heldout_majority_accuracy",
            "most-frequent-token baseline {value:.1%}", "most-frequent-token baseline",
            "#9467bd",
            extra_curves=(("heldout_sentence_accuracy", "held-out sentence-task accuracy",
                           "#17becf"),)),
)


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, key.replace("_", " "))


#: the smallest y span the monitor plots zoom to: a tenth of a typical healthy per-dim
#: std (1/√d is 0.03-0.09 at d = 128-1024), one dimension of effective rank, a twentieth
#: of a bit per token
MIN_SPAN = {"std": 0.005, "rank": 1.0, "bits / token": 0.05}

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
        # a monitor score is measured on a fixed set, so a run that does not learn gives a
        # flat curve; autoscaled to its 1e-6 wobble it would read as a steep rise or fall
        self.std_plot.getViewBox().setLimits(minYRange=MIN_SPAN["std"])
        self.rank_plot.getViewBox().setLimits(minYRange=MIN_SPAN["rank"])
        self._curve("rank", self.rank_plot, PALETTE["rank"], 2, "projector", symbol=True)
        self._curve("backbone_rank", self.rank_plot, PALETTE["backbone_rank"], 2, "backbone",
                    symbol=True)
        # created on the first method-specific metric (hidden plot items with legends
        # break pyqtgraph's teardown), removed again by clear()
        self.method_plot: pg.PlotItem | None = None
        # held-out text scores (language models), created on the first report holding one
        self.heldout_plot: pg.PlotItem | None = None
        self.heldout: HeldOut | None = None
        self.heldout_line: pg.InfiniteLine | None = None
        # no setXLink: linked axes would re-lay-out and repaint every plot on each loss
        # update, which is most of the GUI thread's time during a run
        lw.ci.layout.setSpacing(6)

        self.timer = QTimer(self)
        self.timer.setInterval(self.REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def _plot(self, row: int, col: int, title: str, ylabel: str, colspan: int = 1
              ) -> pg.PlotItem:
        p = self._new_plot(title, ylabel)
        self.layout_widget.addItem(p, row=row, col=col, colspan=colspan)
        return p

    @staticmethod
    def _new_plot(title: str, ylabel: str) -> pg.PlotItem:
        """A plot styled like the others, not yet placed in the layout."""
        p = pg.PlotItem(title=title)
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
        for key in [k for k in self.curves if k.startswith("heldout:")]:
            del self.curves[key], self.series[key]
        for plot in (self.method_plot, self.heldout_plot):
            if plot is not None:
                self.layout_widget.removeItem(plot)
        self.method_plot = self.heldout_plot = None
        self.heldout = self.heldout_line = None
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
                    self.method_plot = self._new_plot("Method metrics", "value")
                    self._place_bottom_row()
                n = sum(k.startswith("extra:") for k in self.curves)
                self._curve(key, self.method_plot, EXTRA_COLORS[n % len(EXTRA_COLORS)], 1.5,
                            metric_name(name))
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
        if e.extra:
            self.add_heldout(e.step, e.extra)

    def add_heldout(self, step: int, extra: dict[str, float]) -> None:
        """Held-out text scores of a monitor report, with their reference line."""
        if self.heldout is None:
            spec = next((h for h in HELDOUT if h.key in extra), None)
            if spec is None:
                return
            self._make_heldout_plot(spec)
        spec = self.heldout
        assert spec is not None and self.heldout_line is not None
        for key in (spec.key, *(k for k, _, _ in spec.extra_curves)):
            value = extra.get(key)
            if value is None or not math.isfinite(value):
                continue
            if f"heldout:{key}" not in self.curves:
                _, name, colour = next(c for c in spec.extra_curves if c[0] == key)
                self._curve(f"heldout:{key}", self.heldout_plot, colour, 2, name, symbol=True)
            self.series[f"heldout:{key}"].append(step, value)
            self._dirty.add(f"heldout:{key}")
        ref = extra.get(spec.ref_key)
        if ref is not None and math.isfinite(ref):
            self.heldout_line.show()  # first: a hidden line's label does not refresh
            self.heldout_line.setValue(ref)

    def _make_heldout_plot(self, spec: HeldOut) -> None:
        self.heldout = spec
        plot = self._new_plot(spec.title, spec.ylabel)
        if spec.ylabel == "accuracy":
            plot.setYRange(0, 1)
        elif spec.ylabel in MIN_SPAN:
            plot.getViewBox().setLimits(minYRange=MIN_SPAN[spec.ylabel])
        self.heldout_plot = plot
        self._curve(f"heldout:{spec.key}", plot, spec.colour, 2, spec.name, symbol=True)
        line = pg.InfiniteLine(
            angle=0, movable=False,
            pen=pg.mkPen(PALETTE["baseline"], width=2, style=pg.QtCore.Qt.PenStyle.DashLine),
            label=spec.ref_label,
            # above the line at the left end: where a held-out curve starts is far from it
            # (a bottom label would be clipped when the line is the lowest thing shown)
            labelOpts={"position": 0.03, "color": PALETTE["baseline"], "movable": False,
                       "anchors": [(0, 1), (0, 1)]})
        line.hide()
        plot.addItem(line)
        # the legend names the dashed line too: a swatch for the reference
        plot.plot([], [], pen=line.pen, name=spec.ref_name)
        self.heldout_line = line
        self._place_bottom_row()

    def _place_bottom_row(self) -> None:
        """The held-out and method-metric plots share the bottom row (one spans it)."""
        plots = [p for p in (self.heldout_plot, self.method_plot) if p is not None]
        ci = self.layout_widget.ci
        for p in plots:
            if p in ci.items:
                ci.removeItem(p)
        for col, p in enumerate(plots):
            ci.addItem(p, row=2, col=col, colspan=2 if len(plots) == 1 else 1)

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
