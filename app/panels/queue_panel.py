"""The "Sweep" tab: a sweep's or demo's queue of runs, its results plot and their curves.

The queue is the sweep folder (:mod:`engine.sweep`), so it survives closing the window:
the panel only reads it. The results plot puts a final metric of each run against the
swept value (one point per run; clicking a point opens that run), and the overlay plot
draws every run's curve of the same metric over the steps.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

#: results-plot metric -> (axis label, SweepRow attribute or key-metric marker, curve key)
METRICS: dict[str, tuple[str, str, str]] = {
    "final kNN accuracy": ("kNN accuracy", "knn_accuracy", "knn_accuracy"),
    "effective rank": ("effective rank", "effective_rank", "effective_rank"),
    "final loss": ("loss", "loss", "loss"),
    "method's own metric": ("", "key_metric", ""),
}
COLUMNS = ("#", "setting", "status", "kNN", "eff. rank", "loss", "own metric", "run")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")


class QueuePanel(QWidget):
    """Shows one sweep folder; emits what the user asks of it."""

    open_requested = Signal(str)  # a run folder
    cancel_requested = Signal(int)  # a pending value's index
    stop_requested = Signal()
    resume_requested = Signal(str)  # the sweep folder

    def __init__(self) -> None:
        super().__init__()
        self.sweep_path: str | None = None
        self.result: Any = None
        self.running = False
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.title = QLabel("No sweep yet: Run ▸ Sweep… queues one run per value of a "
                            "setting, and the Demos menu runs guided experiments.")
        self.title.setWordWrap(True)
        top.addWidget(self.title, 1)
        self.cancel_button = QPushButton("Cancel selected")
        self.cancel_button.setToolTip("Take the selected runs that have not started out of "
                                      "the queue")
        self.cancel_button.clicked.connect(self._cancel_selected)
        self.stop_button = QPushButton("Stop queue")
        self.stop_button.setToolTip("Stop the run under way (with a checkpoint) and the "
                                    "queue; Resume queue continues from there")
        self.stop_button.clicked.connect(self.stop_requested)
        self.resume_button = QPushButton("Resume queue")
        self.resume_button.clicked.connect(
            lambda: self.sweep_path and self.resume_requested.emit(self.sweep_path))
        for b in (self.cancel_button, self.stop_button, self.resume_button):
            top.addWidget(b)
        lay.addLayout(top)
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.
                                                           ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(self._open_row)
        split.addWidget(self.table)
        plots = QWidget()
        pl = QHBoxLayout(plots)
        pl.setContentsMargins(0, 0, 0, 0)
        left = QVBoxLayout()
        self.metric = QComboBox()
        self.metric.addItems(list(METRICS))
        self.metric.currentIndexChanged.connect(self._draw)
        left.addWidget(self.metric)
        self.results = pg.PlotWidget(background="w")
        self.results.showGrid(x=True, y=True, alpha=0.3)
        self.results.setToolTip("One point per run: click a point to open its run")
        self.points = pg.ScatterPlotItem(size=11, pen=pg.mkPen("k"), brush=pg.mkBrush(PALETTE[0]))
        self.points.sigClicked.connect(self._on_point)
        self.results.addItem(self.points)
        self.line = pg.PlotDataItem(pen=pg.mkPen(PALETTE[0], width=1.5))
        self.results.addItem(self.line)
        left.addWidget(self.results, 1)
        pl.addLayout(left, 1)
        self.overlay = pg.PlotWidget(background="w", title="every run's curve")
        self.overlay.showGrid(x=True, y=True, alpha=0.3)
        self.overlay.setLabel("bottom", "step")
        for plot in (self.results, self.overlay):  # accuracies as 0.65, not 650 x 0.001
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.legend = self.overlay.addLegend(offset=(-10, 10))
        pl.addWidget(self.overlay, 1)
        split.addWidget(plots)
        # each run's last reconstruction, one row per run (MAE at 25 / 75 / 95 % masking
        # side by side); hidden when no run of the queue makes image previews
        self.previews_host = QWidget()
        self.previews = QGridLayout(self.previews_host)
        self.previews.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.previews_area = QScrollArea()
        self.previews_area.setWidgetResizable(True)
        self.previews_area.setWidget(self.previews_host)
        self.previews_area.hide()
        split.addWidget(self.previews_area)
        split.setSizes([160, 380, 200])
        lay.addWidget(split, 1)
        self._set_buttons()

    # data ------------------------------------------------------------------------------
    def set_sweep(self, path: str | Path | None) -> None:
        self.sweep_path = None if path is None else str(path)
        self.refresh()

    def refresh(self, previews: bool = True) -> None:
        """Read the sweep folder again (after each run and monitor step of the queue;
        the previews, which load image files, only when ``previews``)."""
        from engine.errors import UserInputError
        from engine.sweep import Sweep

        if self.sweep_path is None:
            self.result = None
        else:
            try:
                sweep = Sweep(self.sweep_path)
                self.result = sweep.result()
                self.state = sweep.state
            except UserInputError as e:
                self.title.setText(f"⚠ {e}")
                self.result = None
        self._fill_table()
        self._draw()
        if previews or self.result is None:
            self._fill_previews()
        self._set_buttons()

    def set_running(self, running: bool) -> None:
        self.running = running
        self._set_buttons()

    def _set_buttons(self) -> None:
        r = self.result
        left = r is not None and any(row.status not in ("finished", "failed", "cancelled")
                                     for row in r.rows)
        self.stop_button.setEnabled(self.running)
        self.resume_button.setEnabled(left and not self.running)
        self.cancel_button.setEnabled(r is not None and any(row.status == "pending"
                                                            for row in r.rows))

    def _fill_table(self) -> None:
        r = self.result
        self.table.setRowCount(0 if r is None else len(r.rows))
        if r is None:
            return
        done = sum(row.status == "finished" for row in r.rows)
        demo = self.state.get("demo")
        what = f"demo <b>{demo}</b>" if demo else f"sweep of <b>{r.key}</b>"
        self.title.setText(f"{what}: {done} of {len(r.rows)} runs finished "
                           f"(<code>{r.path}</code>)")
        for i, row in enumerate(r.rows):
            own = "-" if row.key_metric is None else (
                f"{row.key_metric[0]} {_fmt(row.key_metric[0], row.key_metric[1])}")
            cells = (str(i + 1), _value_text(row.value), row.status,
                     "-" if row.knn_accuracy is None else f"{row.knn_accuracy:.1%}",
                     "-" if row.effective_rank is None else f"{row.effective_rank:.1f}",
                     "-" if row.loss is None else f"{row.loss:.4f}", own,
                     row.run_id or "-")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if row.error and c == 2:
                    item.setToolTip(row.error)
                self.table.setItem(i, c, item)

    # the plots ---------------------------------------------------------------------------
    def xs(self) -> tuple[list[float], list[str] | None, bool]:
        """Each run's x: the value itself when every value is a number (log-scaled when
        they span a factor of 20 or more, all positive), else its position with the
        values as tick labels."""
        values = [row.value for row in self.result.rows]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            pos = [float(v) for v in values]
            log = min(pos) > 0 and max(pos) / min(pos) >= 20
            return ([math.log10(v) for v in pos] if log else pos), None, log
        return [float(i) for i in range(len(values))], [_value_text(v) for v in values], False

    def points_shown(self) -> list[tuple[float, float, str]]:
        """(x, y, run folder) of the results plot's points, for tests."""
        return [(p.pos().x(), p.pos().y(), p.data()) for p in self.points.points()]

    def _draw(self) -> None:
        self.points.clear()
        self.line.clear()
        self.overlay.clear()
        self.legend.clear()
        r = self.result
        if r is None or not r.rows:
            return
        name = self.metric.currentText()
        label, attr, curve_key = METRICS[name]
        xs, ticks, log = self.xs()
        spots, line_x, line_y = [], [], []
        own_name = None
        for x, row in zip(xs, r.rows, strict=True):
            y = getattr(row, attr)
            if attr == "key_metric":
                own_name = own_name or (y[0] if y else None)
                y = y[1] if y else None
            if y is None or not row.run_dir:
                continue
            spots.append({"pos": (x, float(y)), "data": row.run_dir})
            line_x.append(x)
            line_y.append(float(y))
        self.points.addPoints(spots)
        if len(line_x) > 1:
            self.line.setData(line_x, line_y)
        axis = self.results.getAxis("bottom")
        axis.setTicks([list(enumerate(ticks))] if ticks else None)
        key_text = "setting" if ticks else r.key
        self.results.setLabel("bottom", key_text + (" (log10)" if log else ""))
        self.results.setLabel("left", label or (own_name or "own metric"))
        self.results.setTitle(f"{label or own_name or 'own metric'} against {key_text}")
        curve_key = curve_key or (own_name or "")
        self._draw_curves(curve_key)

    def _draw_curves(self, key: str) -> None:
        from engine.runs import RunFolder

        if not key:
            return
        self.overlay.setLabel("left", key.replace("_", " "))
        for i, row in enumerate(self.result.rows):
            if not row.run_dir or not Path(row.run_dir).is_dir():
                continue
            pts = [(r["step"], r[key]) for r in RunFolder(row.run_dir).read_metrics()
                   if isinstance(r.get(key), (int, float)) and not r.get("baseline")]
            if not pts:
                continue
            colour = PALETTE[i % len(PALETTE)]
            self.overlay.plot([p[0] for p in pts], [p[1] for p in pts],
                              pen=pg.mkPen(colour, width=2), name=_value_text(row.value))

    def _fill_previews(self) -> None:
        """The last image preview of every run: originals, the model's input and its
        output for the first :data:`PREVIEW_IMAGES` monitor images, a row per run."""
        from engine.runs import RunFolder

        while self.previews.count():
            w = self.previews.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        shown = 0
        for row in self.result.rows if self.result is not None else []:
            if not row.run_dir or not Path(row.run_dir).is_dir():
                continue
            snaps = [p for p in RunFolder(row.run_dir).load_previews()
                     if p.inputs is not None and p.originals is not None]
            if not snaps:
                continue
            last = snaps[-1]
            strips = [last.originals, last.inputs]
            titles = ["original", last.input_title]
            if last.outputs is not None:
                strips.append(last.outputs)
                titles.append(last.output_title)
            label = QLabel(f"<b>{_value_text(row.value)}</b><br>step {last.step}<br>"
                           + "<br>".join(titles))
            self.previews.addWidget(label, shown, 0)
            pic = QLabel()
            pic.setPixmap(_strip_pixmap(strips))
            self.previews.addWidget(pic, shown, 1)
            shown += 1
        self.previews_area.setVisible(shown > 0)

    def previews_shown(self) -> int:
        """How many runs' previews are on screen, for tests."""
        return self.previews.count() // 2

    # user actions ------------------------------------------------------------------------
    def _on_point(self, _item: Any, points: Any, *_: Any) -> None:
        if len(points):
            self.open_requested.emit(str(points[0].data()))

    def _open_row(self, row: int, _col: int) -> None:
        if self.result is not None and self.result.rows[row].run_dir:
            self.open_requested.emit(self.result.rows[row].run_dir)

    def _cancel_selected(self) -> None:
        for index in sorted({i.row() for i in self.table.selectedIndexes()}):
            self.cancel_requested.emit(index)


#: monitor images per run in the previews strip
PREVIEW_IMAGES = 6
#: their side in pixels
PREVIEW_SIDE = 56


def _strip_pixmap(rows: list[Any]) -> Any:
    """uint8 ``(N, H, W, 3)`` arrays as one picture: a line per array, its first
    :data:`PREVIEW_IMAGES` images side by side."""
    import numpy as np
    from PySide6.QtGui import QPixmap

    from app.panels.preview import to_qimage

    lines = []
    for arr in rows:
        imgs = [np.asarray(a) for a in arr[:PREVIEW_IMAGES]]
        h = max(i.shape[0] for i in imgs)
        pad = [np.pad(i, ((0, h - i.shape[0]), (0, 2), (0, 0)), constant_values=255)
               for i in imgs]
        lines.append(np.concatenate(pad, axis=1))
    w = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 2), (0, w - line.shape[1]), (0, 0)), constant_values=255)
             for line in lines]
    grid = np.ascontiguousarray(np.concatenate(lines, axis=0))
    side = PREVIEW_SIDE / max(1, imgs[0].shape[0])
    pm = QPixmap.fromImage(to_qimage(grid))
    return pm.scaled(int(grid.shape[1] * side), int(grid.shape[0] * side),
                     Qt.AspectRatioMode.KeepAspectRatio,
                     Qt.TransformationMode.FastTransformation)


def _value_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _fmt(name: str, v: float) -> str:
    return f"{v:.1%}" if "accuracy" in name else f"{v:.3f}"
