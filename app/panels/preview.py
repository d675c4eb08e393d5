"""What a pretext or reconstruction method makes of fixed monitor images, live.

Reconstruction methods (colorization, inpainting, denoising, MAE) show, per image, the
original, what the model saw and the model's output; pretext methods (rotation, jigsaw,
relative patch) show the inputs with predicted and true labels and the pretext accuracy
curve against chance. A slider scrolls back through the run's earlier snapshots; while it
sits at the newest snapshot it follows the run. The panel takes plain engine events
(:class:`~engine.events.PreviewSnapshot`), so it runs on its own with fake events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSlider, QVBoxLayout, QWidget

from app.panels.training_plots import Series
from engine.events import PreviewSnapshot, RunStarted, StepMetrics

MAX_SNAPSHOTS = 200  # beyond this, every other old snapshot is dropped


def add_to_history(snapshots: list[Any], snap: Any) -> list[Any]:
    """``snapshots`` (ordered by step) with ``snap`` added: a resumed run redoes steps,
    so its snapshots replace the old ones from there on; beyond :data:`MAX_SNAPSHOTS`
    every other old one is dropped (the newest always kept)."""
    kept = [s for s in snapshots if s.step < snap.step] + [snap]
    if len(kept) > MAX_SNAPSHOTS:
        kept = kept[:-1:2][: MAX_SNAPSHOTS // 2] + kept[-1:]
    return kept


def follow_history(slider: Any, count: int, following: bool) -> None:
    """Fit a history slider to ``count`` snapshots without emitting; it moves to the
    newest only when it was already there (``following``)."""
    slider.blockSignals(True)
    slider.setRange(0, count - 1)
    slider.setEnabled(count > 1)
    if following:
        slider.setValue(count - 1)
    slider.blockSignals(False)
#: preview kinds other panels draw: text predictions, image-text similarity heat maps
OTHER_PANELS = ("text", "similarity")
GOOD, BAD, TEXT = QColor("#2ca02c"), QColor("#d62728"), QColor("#333333")


def to_qimage(arr: np.ndarray) -> QImage:
    """A uint8 (H, W, 3) array as a QImage that owns its pixels."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w, _ = arr.shape
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class SnapshotView(QWidget):
    """Paints one snapshot as a grid: a column per image, a row per stage.

    Images are scaled with nearest-neighbour sampling so 32-px pixels stay crisp.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.snapshot: PreviewSnapshot | None = None
        self._rows: list[tuple[str, list[QImage]]] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(160)

    def set_snapshot(self, snap: PreviewSnapshot | None) -> None:
        self.snapshot = snap
        self._rows = []
        if snap is not None:  # text previews (no images) belong to the text panel
            if snap.kind == "reconstruction" and snap.originals is not None:
                self._rows.append(("original", [to_qimage(a) for a in snap.originals]))
            if snap.inputs is not None:
                self._rows.append((snap.input_title, [to_qimage(a) for a in snap.inputs]))
            if snap.outputs is not None:
                self._rows.append((snap.output_title, [to_qimage(a) for a in snap.outputs]))
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(800, 420)

    def cell_rects(self) -> list[list[QRect]]:
        """Where each image of each row is drawn (for painting and for tests)."""
        if not self._rows:
            return []
        n = max(len(imgs) for _, imgs in self._rows)
        label_w, gap = 110, 6
        text_h = 34 if self.snapshot is not None and self.snapshot.kind == "classification" \
            else 0
        rows = len(self._rows)
        avail_w = max(1, self.width() - label_w - gap * (n + 1))
        avail_h = max(1, self.height() - gap * (rows + 1) - rows * text_h)
        side = max(8, min(avail_w // n, avail_h // rows))
        out = []
        for r, (_, imgs) in enumerate(self._rows):
            y = gap + r * (side + gap + text_h)
            row_rects = []
            for c, img in enumerate(imgs):
                # fit the image in its square cell, keeping its aspect ratio
                aspect = img.width() / max(1, img.height())
                w, h = (side, max(1, round(side / aspect))) if aspect >= 1 else \
                    (max(1, round(side * aspect)), side)
                x = label_w + gap + c * (side + gap) + (side - w) // 2
                row_rects.append(QRect(x, y + (side - h) // 2, w, h))
            out.append(row_rects)
        return out

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        if not self._rows:
            painter.setPen(TEXT)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                             "No preview yet: pretext and reconstruction methods show theirs "
                             "at every monitor step.")
            painter.end()
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        rects = self.cell_rects()
        font = QFont(self.font())
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        snap = self.snapshot
        for (title, imgs), row_rects in zip(self._rows, rects, strict=True):
            painter.setPen(TEXT)
            painter.setFont(font)
            first = row_rects[0]
            painter.drawText(QRect(0, first.y(), 104, first.height()),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter |
                             Qt.TextFlag.TextWordWrap, title)
            for i, (img, rect) in enumerate(zip(imgs, row_rects, strict=True)):
                painter.drawImage(QRectF(rect), img)
                if snap is not None and snap.kind == "classification" and i < len(snap.true):
                    pred, true = snap.predicted[i], snap.true[i]
                    painter.setFont(small)
                    painter.setPen(GOOD if pred == true else BAD)
                    painter.drawText(QRect(rect.x(), rect.bottom() + 2, rect.width(), 16),
                                     Qt.AlignmentFlag.AlignHCenter, f"pred {pred}")
                    painter.setPen(TEXT)
                    painter.drawText(QRect(rect.x(), rect.bottom() + 17, rect.width(), 16),
                                     Qt.AlignmentFlag.AlignHCenter, f"true {true}")
        painter.end()


class PreviewPanel(QWidget):
    """Snapshot grid, a slider through the run's snapshots, and the pretext accuracy curve."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.snapshots: list[PreviewSnapshot] = []
        self.chance: float | None = None
        self.accuracy = Series()
        self._dirty = False

        self.title = QLabel("")
        self.title.setObjectName("previewTitle")
        self.view = SnapshotView()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.setToolTip("Scroll back through earlier snapshots of the run; at the right "
                               "end the preview follows the run.")
        self.slider.valueChanged.connect(self._show_index)
        self.slider_label = QLabel("no snapshots")
        self.slider_label.setMinimumWidth(170)

        self.acc_plot = pg.PlotWidget()
        self.acc_plot.setBackground("w")
        self.acc_plot.setMaximumHeight(200)
        item = self.acc_plot.getPlotItem()
        item.setTitle("Pretext accuracy (training batches)", size="10pt")
        item.setLabel("bottom", "step")
        item.setYRange(0, 1)
        item.showGrid(x=True, y=True, alpha=0.3)
        item.addLegend(offset=(10, 10))
        self.acc_curve = item.plot(pen=pg.mkPen("#9467bd", width=2), name="pretext accuracy")
        self.chance_line = pg.InfiniteLine(
            angle=0, pen=pg.mkPen("#7f7f7f", width=1.5, style=Qt.PenStyle.DashLine),
            label="chance", labelOpts={"position": 0.05, "color": "#555"})
        item.addItem(self.chance_line)
        self.acc_plot.setVisible(False)

        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addWidget(self.view, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Snapshot"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.slider_label)
        lay.addLayout(row)
        lay.addWidget(self.acc_plot)

        self.timer = QTimer(self)
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    # events ---------------------------------------------------------------------------
    def add_event(self, e: object) -> None:
        if isinstance(e, RunStarted):
            self.set_chance(e.pretext_chance)
        elif isinstance(e, PreviewSnapshot) and e.kind not in OTHER_PANELS:
            self.add_snapshot(e)
        elif isinstance(e, StepMetrics):
            acc = e.extra.get("pretext_accuracy")
            if acc is not None:
                self.accuracy.append(e.step, acc)
                self._dirty = True

    def set_chance(self, chance: float | None) -> None:
        self.chance = chance
        if chance is not None:
            self.chance_line.setValue(chance)
            self.chance_line.label.setFormat(f"chance {chance:.1%}")
        self.chance_line.setVisible(chance is not None)
        self.acc_plot.setVisible(chance is not None)

    def add_snapshot(self, snap: PreviewSnapshot) -> None:
        following = not self.snapshots or self.slider.value() == len(self.snapshots) - 1
        self.snapshots = add_to_history(self.snapshots, snap)
        follow_history(self.slider, len(self.snapshots), following)
        self._show_index(self.slider.value())

    def load_run(self, run_dir: str, rows: list[dict[str, Any]] | None = None) -> None:
        """Show a saved run's snapshots (and its pretext accuracy, from metrics rows)."""
        from engine.runs import RunFolder

        self.clear()
        for snap in RunFolder(run_dir).load_previews():
            if snap.kind not in OTHER_PANELS:
                self.add_snapshot(snap)
        for r in rows or []:
            if r.get("pretext_accuracy") is not None and "loss" in r:
                self.accuracy.append(r["step"], r["pretext_accuracy"])
        self._dirty = True
        self.refresh()

    def clear(self) -> None:
        self.snapshots.clear()
        self.accuracy.clear()
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.blockSignals(False)
        self.set_chance(None)
        self._dirty = True
        self._show_index(0)

    # drawing --------------------------------------------------------------------------
    def _show_index(self, i: int) -> None:
        if not self.snapshots:
            self.view.set_snapshot(None)
            self.slider_label.setText("no snapshots")
            self.title.setText("")
            return
        i = max(0, min(i, len(self.snapshots) - 1))
        snap = self.snapshots[i]
        self.view.set_snapshot(snap)
        live = " (latest)" if i == len(self.snapshots) - 1 else ""
        self.slider_label.setText(f"{i + 1} / {len(self.snapshots)} · step {snap.step}{live}")
        if snap.kind == "classification" and snap.true:
            right = sum(p == t for p, t in zip(snap.predicted, snap.true, strict=False))
            self.title.setText(f"<b>Step {snap.step}</b>: {right} of {len(snap.true)} shown "
                               "correctly predicted (green right, red wrong)")
        else:
            self.title.setText(f"<b>Step {snap.step}</b>: original, {snap.input_title}, "
                               f"{snap.output_title}")

    def refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.acc_curve.setData(self.accuracy.x, self.accuracy.y)

    def current(self) -> PreviewSnapshot | None:
        return self.view.snapshot
