"""The "What it trains on" tab: the inputs the chosen method builds from a few samples.

Live before Start: every change in the form redraws it (a stronger crop, a mask ratio, a
patch size), and "New draw" draws the randomness again. The pictures come from the
method's own step functions (:mod:`engine.views`); this panel only lays them out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.panels.preview import to_qimage
from app.worker import FunctionWorker, start_in_thread

#: the side of a shown image in pixels (small crops are scaled up to it)
CELL = 112
#: how wide a text cell is
TEXT_WIDTH = 360


class ViewsPanel(QWidget):
    """A grid: a row per sample, a column for the sample and each input the step makes.

    The window sets :attr:`config_source` (returns the form's config, raising
    ``ConfigError`` for a bad field) and :attr:`data_source` (returns an already loaded
    dataset that suits the config, or None), and calls :meth:`request_redraw` when the
    form or the dataset changes.
    """

    drawn = Signal(float)  # seconds from the request to the pictures on screen

    def __init__(self) -> None:
        super().__init__()
        self.config_source: Callable[[], Any] | None = None
        self.data_source: Callable[[Any], Any] | None = None
        self.draw = 0
        self.drawing: Any = None  # the last engine.views.ViewsDrawing
        self._samples_key: Any = None
        self._samples: Any = None  # (source, (inputs, names)) for _samples_key
        self._loading: Any = None
        self._requested_at = 0.0
        self._stale = True
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.title = QLabel("Choose a method to see what it trains on.")
        self.title.setObjectName("viewsTitle")
        self.title.setWordWrap(True)
        top.addWidget(self.title, 1)
        self.timing = QLabel("")
        self.timing.setObjectName("hint")
        top.addWidget(self.timing)
        self.new_draw = QPushButton("New draw")
        self.new_draw.setToolTip("Draw the random crops, masks and rotations again")
        self.new_draw.clicked.connect(self.redraw_random)
        top.addWidget(self.new_draw)
        lay.addLayout(top)
        self.message = QLabel("")
        self.message.setObjectName("hint")
        self.message.setWordWrap(True)
        self.message.hide()
        lay.addWidget(self.message)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(6)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.scroll.setWidget(self.grid_host)
        lay.addWidget(self.scroll, 1)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)  # once per event-loop pass, however many fields changed
        self._timer.timeout.connect(self.redraw)

    # requests --------------------------------------------------------------------
    def request_redraw(self) -> None:
        """Redraw soon (coalesced): the form or the dataset changed. A hidden panel
        only notes it and redraws when it is shown."""
        if not self.isVisible():
            self._stale = True
            return
        if not self._timer.isActive():
            self._requested_at = time.perf_counter()
        self._timer.start()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._stale:
            self._stale = False
            self.request_redraw()

    def redraw_random(self) -> None:
        self.draw += 1
        self.request_redraw()

    def redraw(self) -> None:
        """Draw now from the form's config; a message instead when it is not valid."""
        from engine.errors import ConfigError, UserInputError

        if self.config_source is None:
            return
        started = self._requested_at or time.perf_counter()
        self._requested_at = 0.0
        try:
            cfg = self.config_source()
        except ConfigError as e:
            self._show_message(f"Cannot draw the views: {e}")
            return
        samples = self._samples_for(cfg)
        if samples is None:
            return  # loading; redraws when the data is there
        from engine.views import draw_views

        source, picked = samples
        try:
            drawing = draw_views(cfg, source, self.draw, samples=picked)
        except (UserInputError, ValueError) as e:  # a config or data the method refuses
            # the pictures of another method or dataset would mislead: none are shown
            self._clear_grid()
            self.drawing = None
            self.timing.setText("")
            self.title.setText(f"<b>What {cfg.method_name} trains on</b>: nothing to draw "
                               f"for {cfg.data.dataset}; the message says why.")
            self._show_message(f"Cannot draw the views: {e}")
            return
        self.message.hide()
        self.drawing = drawing
        self._render(drawing, cfg)
        took = time.perf_counter() - started
        self.timing.setText(f"drawn in {took * 1000:.0f} ms")
        self.drawn.emit(took)

    # data --------------------------------------------------------------------------
    def _samples_for(self, cfg: Any) -> Any:
        """The fixed samples of the config's data (loaded in the background the first
        time a data setting is seen); None while they load."""
        from engine.registry import get_method_info

        modality = get_method_info(cfg.method_name).modality
        key = (modality, repr(sorted(vars(cfg.data).items())))
        if key == self._samples_key and self._samples is not None:
            return self._samples
        ready = self.data_source(cfg) if self.data_source is not None else None
        if ready is not None:
            return self._keep(key, ready)
        if self._loading == key:
            return None
        self._loading = key
        self._show_message(f"Loading {cfg.data.dataset} to show its samples…")
        from engine.data import load_configured

        data = cfg.data
        worker = FunctionWorker(lambda: load_configured(data, modality=modality))
        worker.result.connect(lambda src: self._on_loaded(key, src))
        worker.error.connect(lambda msg, _tb: self._on_load_error(key, msg))
        start_in_thread(worker, self)
        return None

    def _keep(self, key: Any, source: Any) -> Any:
        from engine.views import fixed_samples

        self._samples_key, self._samples = key, (source, fixed_samples(source))
        return self._samples

    def _on_loaded(self, key: Any, source: Any) -> None:
        if self._loading != key:
            return
        self._loading = None
        try:
            self._keep(key, source)
        except ValueError as e:
            self._show_message(f"Cannot show samples: {e}")
            return
        self.request_redraw()

    def _on_load_error(self, key: Any, message: str) -> None:
        if self._loading == key:
            self._loading = None
            self._show_message(f"Cannot load the data to show: {message}")

    # drawing -------------------------------------------------------------------------
    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def _clear_grid(self) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            w = item.widget()
            if w is not None:
                w.deleteLater()

    def _render(self, d: Any, cfg: Any) -> None:
        self.title.setText(
            f"<b>What {d.method} trains on</b>: the inputs its training step builds from "
            f"{len(d.names)} fixed samples of {cfg.data.dataset}, made by the step's own "
            "code. Change a setting on the left and they redraw.")
        self._clear_grid()
        columns: list[tuple[str, str, Any, list[str]]] = [
            ("sample", "as stored in the dataset", d.originals, d.original_texts)]
        columns += [(v.title, v.caption, v.images, v.texts) for v in d.views]
        for c, (title, caption, _, _) in enumerate(columns):
            head = QLabel(f"<b>{title}</b><br><span style='color:#666'>{caption}</span>")
            head.setWordWrap(True)
            head.setMaximumWidth(TEXT_WIDTH)
            head.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom)
            self.grid.addWidget(head, 0, c)
        for r in range(len(d.names)):
            for c, (_, _, images, texts) in enumerate(columns):
                cell = QLabel()
                if images is not None:
                    cell.setPixmap(_pixmap(images[r]))
                    cell.setToolTip(d.names[r])
                elif texts:
                    cell.setText(texts[r])
                    cell.setWordWrap(True)
                    cell.setTextFormat(Qt.TextFormat.PlainText)
                    cell.setObjectName("viewText")
                    cell.setFixedWidth(TEXT_WIDTH)
                    cell.setStyleSheet("font-family: monospace;")
                else:
                    continue
                self.grid.addWidget(cell, r + 1, c)


def _pixmap(image: Any) -> QPixmap:
    """A uint8 ``(3, H, W)`` tensor as a pixmap of :data:`CELL` pixels, scaled without
    smoothing so a 16-pixel crop shows its pixels."""
    arr = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    pm = QPixmap.fromImage(to_qimage(arr))
    return pm.scaled(CELL, CELL, Qt.AspectRatioMode.KeepAspectRatio,
                     Qt.TransformationMode.FastTransformation)
