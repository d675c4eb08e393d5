"""The runs browser: every run in the runs dir, to reopen, resume, compare or delete.

Each row shows method, dataset, status, date, steps, final kNN accuracy (with the
random-init baseline) and the collapse verdict. Ticking runs overlays their curves
(loss, kNN accuracy, effective rank) in one plot. The panel reads run folders only
(docs/ARCHITECTURE.md §3), so it works for runs made by the CLI or by another session.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.panels.embedding import label_colours

COLUMNS = ["", "Run", "Method", "Dataset", "Status", "Started", "Steps", "kNN (random init)",
           "Verdict"]
OVERLAY_METRICS = {"loss": "Loss", "knn_accuracy": "kNN accuracy",
                   "effective_rank": "Effective rank", "std": "Per-dim std"}


class RunsPanel(QWidget):
    open_requested = Signal(str)  # run folder
    resume_requested = Signal(str)
    settings_requested = Signal(str)  # fill the form with the run's settings
    delete_requested = Signal(str)
    export_requested = Signal(str, str)  # run folder, what ("encoder", "embeddings", "config")

    def __init__(self, runs_dir: str | Path | None = None, parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self.runs_dir = runs_dir
        self.active_run: str | None = None  # the run being trained (cannot be deleted)
        self.runs: list[Any] = []

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(lambda *_: self._emit(self.open_requested))

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Show the run's curves, embeddings and previews again")
        self.open_button.clicked.connect(lambda: self._emit(self.open_requested))
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(lambda: self._emit(self.resume_requested))
        self.settings_button = QPushButton("Use settings")
        self.settings_button.setToolTip(
            "Fill the form with the run's method, dataset and settings, to train it again "
            "with one thing changed and compare")
        self.settings_button.clicked.connect(lambda: self._emit(self.settings_requested))
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(lambda: self._emit(self.delete_requested))
        self.export_combo = QComboBox()
        self.export_combo.addItem("Export…", "")
        self.export_combo.addItem("Encoder (state_dict + loader)", "encoder")
        self.export_combo.addItem("Embeddings (.npy + .csv)", "embeddings")
        self.export_combo.addItem("Config (TOML + command)", "config")
        self.export_combo.activated.connect(self._on_export)
        buttons = QHBoxLayout()
        for b in (self.refresh_button, self.open_button, self.resume_button,
                  self.settings_button, self.delete_button):
            buttons.addWidget(b)
        buttons.addWidget(self.export_combo)
        buttons.addStretch(1)
        self.count_label = QLabel("")
        buttons.addWidget(self.count_label)

        self.metric_combo = QComboBox()
        for key, title in OVERLAY_METRICS.items():
            self.metric_combo.addItem(title, key)
        self.metric_combo.currentIndexChanged.connect(lambda *_: self.update_overlay())
        self.overlay = pg.PlotWidget()
        self.overlay.setBackground("w")
        self.overlay.showGrid(x=True, y=True, alpha=0.3)
        self.overlay.setLabel("bottom", "step")
        self.overlay_legend = self.overlay.getPlotItem().addLegend(offset=(10, 10))
        self.overlay_hint = QLabel("Tick runs in the first column to overlay their curves.")
        over = QWidget()
        ol = QVBoxLayout(over)
        ol.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Compare"))
        row.addWidget(self.metric_combo)
        row.addWidget(self.overlay_hint, 1)
        ol.addLayout(row)
        ol.addWidget(self.overlay, 1)

        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addLayout(buttons)
        tl.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(over)
        split.setSizes([300, 300])
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        self._update_buttons()

    # data -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the runs dir, keeping ticks and the selection."""
        from engine.runs import default_runs_dir, list_runs

        ticked = set(self.ticked())
        selected = self.selected()
        self.runs = list_runs(self.runs_dir or default_runs_dir())
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.runs))
        for r, info in enumerate(self.runs):
            tick = QTableWidgetItem()
            tick.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled |
                          Qt.ItemFlag.ItemIsSelectable)
            tick.setCheckState(Qt.CheckState.Checked if str(info.path) in ticked
                               else Qt.CheckState.Unchecked)
            tick.setData(Qt.ItemDataRole.UserRole, str(info.path))
            self.table.setItem(r, 0, tick)
            status = info.status  # 'running' only while its process lives
            knn = "–" if info.knn_accuracy is None else f"{info.knn_accuracy:.1%}"
            if info.baseline_knn is not None:
                knn += f" ({info.baseline_knn:.1%})"
            started = "–" if not info.started else time.strftime(
                "%Y-%m-%d %H:%M", time.localtime(info.started))
            cells = [info.id, info.method, info.dataset, status, started,
                     f"{info.step}/{info.total_steps}", knn,
                     {"healthy": "● healthy", "dimensional": "● dimensional collapse",
                      "complete": "● complete collapse"}.get(info.verdict or "", "–")]
            for c, text in enumerate(cells, start=1):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, str(info.path))
                if c == 8 and info.verdict:
                    item.setForeground(pg.mkColor({"healthy": "#2ca02c",
                                                   "dimensional": "#e69500",
                                                   "complete": "#d62728"}[info.verdict]))
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)
        if selected is not None:
            for r, info in enumerate(self.runs):
                if str(info.path) == selected:
                    self.table.selectRow(r)
        self.count_label.setText(f"{len(self.runs)} run(s)")
        self._update_buttons()
        self.update_overlay()

    def ticked(self) -> list[str]:
        out = []
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.checkState() == Qt.CheckState.Checked:
                out.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def set_ticked(self, paths: list[str]) -> None:
        self.table.blockSignals(True)
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            path = str(item.data(Qt.ItemDataRole.UserRole))
            item.setCheckState(Qt.CheckState.Checked if path in paths
                               else Qt.CheckState.Unchecked)
        self.table.blockSignals(False)
        self.update_overlay()

    def selected(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() \
            else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 1)
        return None if item is None else str(item.data(Qt.ItemDataRole.UserRole))

    def select(self, path: str) -> None:
        for r, info in enumerate(self.runs):
            if str(info.path) == str(path):
                self.table.selectRow(r)

    # overlay ----------------------------------------------------------------------------
    def update_overlay(self) -> None:
        """One curve per ticked run for the chosen metric."""
        from engine.runs import RunFolder

        key = str(self.metric_combo.currentData())
        plot = self.overlay.getPlotItem()
        for item in list(plot.listDataItems()):
            plot.removeItem(item)
        self.overlay_legend.clear()
        paths = self.ticked()
        colours = label_colours(max(1, len(paths)))
        self.overlay_curves: dict[str, Any] = {}
        for path, colour in zip(paths, colours, strict=False):
            rows = RunFolder(path).read_metrics()
            pts = [(r["step"], r[key]) for r in rows
                   if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            symbol = None if key == "loss" else "o"
            curve = plot.plot(list(xs), list(ys), pen=pg.mkPen(colour, width=2),
                              symbol=symbol, symbolSize=5, symbolBrush=colour, symbolPen=None,
                              name=Path(path).name)
            self.overlay_curves[path] = curve
        plot.setLabel("left", OVERLAY_METRICS[key])
        self.overlay_hint.setText(
            f"{len(self.overlay_curves)} run(s) overlaid" if paths
            else "Tick runs in the first column to overlay their curves.")

    # actions ----------------------------------------------------------------------------
    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 0:
            self.update_overlay()

    def _emit(self, signal: Any) -> None:
        path = self.selected()
        if path is not None:
            signal.emit(path)

    def _on_export(self, index: int) -> None:
        what = self.export_combo.itemData(index)
        self.export_combo.setCurrentIndex(0)
        path = self.selected()
        if what and path is not None:
            self.export_requested.emit(path, what)

    def _update_buttons(self) -> None:
        path = self.selected()
        has = path is not None
        self.open_button.setEnabled(has)
        self.resume_button.setEnabled(has and path != self.active_run)
        self.settings_button.setEnabled(has)
        self.delete_button.setEnabled(has and path != self.active_run)
        self.export_combo.setEnabled(has)
