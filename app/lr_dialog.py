""""Suggest" beside the learning rate: a learning-rate range test of the form's config,
its plot, and the suggested rate for the field (:mod:`engine.lr_find`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from app.worker import FunctionWorker, start_in_thread

#: steps of the test from the window (the CLI defaults to 100)
GUI_STEPS = 60


class LRFindDialog(QDialog):
    """Runs the test in a worker thread; "Use it" writes the suggestion into the form."""

    finished_test = Signal(object)  # the LRFindResult, or None on failure

    def __init__(self, parent: Any, cfg: Any, source: Any, apply: Callable[[float], None],
                 steps: int = GUI_STEPS) -> None:
        super().__init__(parent)
        self.setWindowTitle("Suggest a learning rate")
        self.resize(640, 460)
        self.apply = apply
        self.result: Any = None
        lay = QVBoxLayout(self)
        self.status = QLabel(
            f"Training {cfg.method_name} for {steps} steps with the learning rate rising "
            "from 1e-6 to 10 (Smith 2017): the loss stays flat while the rate is too small, "
            "falls where it is useful and blows up where it is too large. Nothing is saved.")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLogMode(x=True, y=False)
        self.plot.setLabel("bottom", "learning rate")
        self.plot.setLabel("left", "loss (smoothed)")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        lay.addWidget(self.plot, 1)
        row = QHBoxLayout()
        self.use_button = QPushButton("Use it")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self._use)
        row.addStretch(1)
        row.addWidget(self.use_button)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        row.addWidget(close)
        lay.addLayout(row)
        from engine.lr_find import lr_find

        worker = FunctionWorker(lambda: lr_find(cfg, source, steps=steps))
        worker.result.connect(self._on_result)
        worker.error.connect(self._on_error)
        start_in_thread(worker, self)

    def _on_result(self, r: Any) -> None:
        self.result = r
        if r.lrs:
            self.plot.plot(r.lrs, r.losses, pen=pg.mkPen("#bbbbbb", width=1))
            self.plot.plot(r.lrs, r.smoothed, pen=pg.mkPen("#1f77b4", width=2))
        if r.suggestion is not None:
            self.plot.addItem(pg.InfiniteLine(math.log10(r.suggestion), angle=90,
                                              pen=pg.mkPen("#d62728", width=2)))
            self.status.setText(f"Suggested learning rate: <b>{r.suggestion:.3g}</b> "
                                f"({r.reason}; {len(r.lrs)} steps in {r.seconds:.0f} s). For "
                                "methods that can collapse a falling loss may be the collapse "
                                "itself: compare with the method's own default.")
            self.use_button.setEnabled(True)
        else:
            self.status.setText(f"No suggestion: {r.reason}.")
        self.finished_test.emit(r)

    def _on_error(self, message: str, _tb: str) -> None:
        self.status.setText(f"The test failed: {message}")
        self.finished_test.emit(None)

    def _use(self) -> None:
        if self.result is not None and self.result.suggestion is not None:
            self.apply(float(f"{self.result.suggestion:.3g}"))
            self.close()
