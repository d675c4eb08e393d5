"""What an image-text method (CLIP) has learned to match, live: the "Matching" tab.

Three views of one question, does an image find its caption and a caption its image:

- **the similarity heat map** of fixed monitor pairs (images as rows, with their
  thumbnails, captions as columns), from the method's ``PreviewSnapshot`` of kind
  ``"similarity"``; the diagonal, each image against its own caption, lights up as the
  towers learn. Hovering a cell names both captions and the value; a slider goes back
  through the run's snapshots and, at its right end, follows the run.
- **a search box**: a typed sentence ranks the monitor images (``query_requested``: the
  window asks the running trainer, or searches the saved run once training has ended);
  the :class:`~engine.events.QueryResult` is drawn as a ranked strip of thumbnails with
  their scores and captions, from the run's :class:`~engine.events.MonitorSet`.
- **curves** of retrieval recall@1/5/10 both ways and zero-shot accuracy from the
  monitor reports, each beside its chance level (dashed), and the image tower's kNN.

The panel takes plain engine events, so it runs on its own with fake ones (the tests do).
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.panels.preview import add_to_history, follow_history, to_qimage
from app.panels.training_plots import PALETTE, Series
from engine.events import MonitorReport, MonitorSet, PreviewSnapshot, QueryResult, replay

KIND = "similarity"
RECALL_KS = (1, 5, 10)
RECALL_COLOURS = {1: "#1f77b4", 5: "#d62728", 10: "#2ca02c"}
ZERO_SHOT, KNN = "#9467bd", "#9a9a9a"
Y_FLOOR = 0.2  # the curves' y axes show at least 0-20 %
#: cells of a heat map this small also show their value as a number, when a cell is at
#: least this many pixels wide
MAX_NUMBERED, MIN_NUMBER_CELL_PX = 12, 27
MIN_LEVEL_SPAN = 0.2  # the heat map's colour scale is at least this wide
ROW_CAPTION_CHARS = 38  # a caption beside its row is shortened to this (hover: in full)
THUMB_PX = 64  # result thumbnails (the monitor set's are at most 64 px)
CAPTION_CHARS = 140  # a caption in a line of text is shortened to this
CARD_CAPTION_CHARS = 60  # and under a result's thumbnail, to this (about three lines)
EMPTY_MAP = ("No similarity map yet: image-text methods show theirs at every monitor "
             "step.")
SEARCH_HINT = ("Type a sentence and press Enter: the monitor images it matches best "
               "appear here, ranked (during training, and from the saved run after it).")


CURVES_HINT = ("Monitor pairs. <b>Recall@k</b>: the right match among the k best. "
               "<b>Zero-shot</b>: an image nearest its class's prompts (“a photo of a "
               "circle”), beside the image tower's kNN. Dashed: chance.")


def esc(text: Any) -> str:
    return html.escape(str(text), quote=False)


def shorten(text: str, limit: int = CAPTION_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def similarity_of(snap: PreviewSnapshot) -> tuple[np.ndarray, list[str]] | None:
    """The snapshot's ``(N, N)`` similarity matrix and its N captions, or None when it
    holds none (a malformed item never raises)."""
    for item in snap.items:
        if not isinstance(item, dict) or item.get("type") != KIND:
            continue
        try:
            mat = np.asarray(item.get("similarity"), dtype=np.float32)
        except (TypeError, ValueError):
            return None
        if mat.ndim != 2 or mat.size == 0:
            return None
        captions = [str(c) for c in item.get("captions") or []]
        return mat, captions + [""] * max(0, mat.shape[1] - len(captions))
    return None


def summary(step: int, mat: np.ndarray) -> str:
    """The title line in words: how many images pick their own caption, and the own
    caption's similarity against the others'."""
    n = min(mat.shape)
    own = np.diag(mat)[:n]
    right = int((mat[:n].argmax(1)[:n] == np.arange(n)).sum())
    others = (mat[:n, :n].sum() - own.sum()) / max(1, n * n - n)
    return (f"<b>Step {step}</b>: {right} of {n} images score their own caption highest "
            f"(by chance: 1 of {n}). Own caption {own.mean():.2f} on average, the others "
            f"{others:.2f}.")


def colour_levels(ranges: list[tuple[float, float]]) -> tuple[float, float]:
    """The colour scale of a run's heat maps from each snapshot's (min, max): the range
    of every snapshot so far, so the frames of the slider compare by colour; at least
    0.2 wide, so the near-equal values of a random-init model do not look like
    structure."""
    lo = min(r[0] for r in ranges)
    hi = max(r[1] for r in ranges)
    if hi - lo < MIN_LEVEL_SPAN:
        mid = (hi + lo) / 2
        lo, hi = mid - MIN_LEVEL_SPAN / 2, mid + MIN_LEVEL_SPAN / 2
    return max(-1.0, lo), min(1.0, hi)


class SimilarityMap(pg.GraphicsLayoutWidget):
    """An N×N heat map with a colour bar: the row images' thumbnails on its left, each
    row's own caption on its right (caption n is column n) and the diagonal, each image
    against its own caption, outlined."""

    hovered = Signal(int, int)  # row, column; (-1, -1) when the mouse leaves the cells

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.plot: pg.PlotItem = self.addPlot()
        p = self.plot
        p.invertY(True)  # row 0 at the top, and images upright
        p.setAspectLocked(True)
        p.hideButtons()
        p.setMenuEnabled(False)
        p.setMouseEnabled(x=False, y=False)
        p.setLabel("left", "image")
        p.setLabel("bottom", "caption n, of image n (hover a cell to read both)")
        p.showAxis("right")  # each row's own caption, numbered as its column
        small = QFont()
        small.setPointSizeF(8.0)
        p.getAxis("right").setStyle(tickFont=small, tickTextOffset=6)
        self.image = pg.ImageItem(axisOrder="row-major")
        p.addItem(self.image)
        self.colour_map = pg.colormap.get("viridis")
        # below the map: beside it the captions already take the width
        self.bar = pg.ColorBarItem(values=(-1.0, 1.0), colorMap=self.colour_map,
                                   label="cosine similarity of image and caption",
                                   interactive=False, width=10, orientation="horizontal")
        self.bar.axis.enableAutoSIPrefix(False)
        self.bar.setImageItem(self.image, insert_in=p)
        self.levels = (-1.0, 1.0)
        self.diagonal = pg.ScatterPlotItem(pxMode=False, symbol="s", size=0.94,
                                           pen=pg.mkPen("#ffffff", width=2), brush=None)
        p.addItem(self.diagonal)
        self.thumbs: list[pg.ImageItem] = []
        self.numbers: list[pg.TextItem] = []
        self.matrix: np.ndarray | None = None
        self.row_captions: list[str] = []
        self._hovered_cell = (-1, -1)
        self.plot.vb.sigResized.connect(self._fit_numbers)
        self.plot.vb.sigRangeChanged.connect(self._fit_numbers)

    def set_matrix(self, mat: np.ndarray | None, originals: np.ndarray | None = None,
                   captions: list[str] | None = None,
                   levels: tuple[float, float] = (-1.0, 1.0)) -> None:
        """Draw ``mat`` (rows: images, columns: their captions) on the colour scale
        ``levels``, with the row images and captions when given."""
        p = self.plot
        self.matrix = mat
        self._hovered_cell = (-1, -1)  # the next move names the new values
        for item in self.thumbs + self.numbers:
            p.removeItem(item)
        self.thumbs, self.numbers = [], []
        if mat is None:
            self.image.clear()
            self.diagonal.setData([], [])
            self.row_captions = []
            p.getAxis("right").setTicks([[]])
            return
        rows, cols = mat.shape
        self.levels = levels
        self.bar.setLevels(levels)
        self.image.setImage(mat, autoLevels=False, levels=levels)
        self.image.setRect(QRectF(0, 0, cols, rows))
        n = min(rows, cols)
        self.diagonal.setData(np.arange(n) + 0.5, np.arange(n) + 0.5)
        left = 0.0
        if originals is not None and len(originals) >= rows:
            left = -1.1
            for i in range(rows):
                thumb = pg.ImageItem(np.ascontiguousarray(originals[i]), axisOrder="row-major")
                thumb.setRect(QRectF(-1.05, i + 0.05, 0.9, 0.9))
                p.addItem(thumb)
                self.thumbs.append(thumb)
        if rows <= MAX_NUMBERED and cols <= MAX_NUMBERED:
            font = QFont()
            font.setPointSizeF(7.0)
            span = max(1e-6, levels[1] - levels[0])
            for r in range(rows):
                for c in range(cols):
                    v = float(mat[r, c])
                    bright = (v - levels[0]) / span > 0.62  # viridis: yellow-green
                    t = pg.TextItem(f"{v:.2f}", anchor=(0.5, 0.5),
                                    color="#111111" if bright else "#ffffff")
                    t.setFont(font)
                    t.setPos(c + 0.5, r + 0.5)
                    p.addItem(t)
                    self.numbers.append(t)
        self.row_captions = [(captions or [])[r] if r < len(captions or []) else ""
                             for r in range(rows)]
        p.getAxis("bottom").setTicks([[(c + 0.5, str(c + 1)) for c in range(cols)]])
        p.getAxis("left").setTicks([[(r + 0.5, str(r + 1)) for r in range(rows)]])
        p.getAxis("right").setTicks([[(r + 0.5, f"{r + 1}. {shorten(t, ROW_CAPTION_CHARS)}")
                                      for r, t in enumerate(self.row_captions)]])
        p.setRange(xRange=(left, cols), yRange=(0, rows), padding=0.02)
        self._fit_numbers()

    def _fit_numbers(self, *_: Any) -> None:
        """Show the cells' numbers only where a cell is large enough to hold one."""
        if not self.numbers:
            return
        try:
            px_w, _ = self.plot.vb.viewPixelSize()
        except Exception:  # not laid out yet (no size): decide at the next resize
            return
        show = px_w > 0 and 1.0 / px_w >= MIN_NUMBER_CELL_PX
        for t in self.numbers:
            t.setVisible(show)

    def cell_at(self, scene_pos: QPointF) -> tuple[int, int]:
        """The (row, column) under a scene position, or (-1, -1) off the cells."""
        if self.matrix is None or not self.plot.sceneBoundingRect().contains(scene_pos):
            return -1, -1
        pt = self.plot.vb.mapSceneToView(scene_pos)
        r, c = math.floor(pt.y()), math.floor(pt.x())
        rows, cols = self.matrix.shape
        return (r, c) if 0 <= r < rows and 0 <= c < cols else (-1, -1)

    def cell_centre(self, row: int, col: int) -> QPointF:
        """A cell's centre in scene coordinates (tests hover it)."""
        return self.plot.vb.mapViewToScene(QPointF(col + 0.5, row + 0.5))

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:  # noqa: N802 - Qt override
        """Every move, not the scene's ``sigMouseMoved``: pyqtgraph drops moves that come
        within 1/``mouseRateLimit`` s of the last one, and when the dropped one is where
        the mouse stops, the hover line names the cell it came from."""
        super().mouseMoveEvent(ev)
        cell = self.cell_at(self.mapToScene(ev.position().toPoint()))
        if cell != self._hovered_cell:
            self._hovered_cell = cell
            self.hovered.emit(*cell)


class ResultCard(QFrame):
    """One search result: rank and score, the thumbnail, the caption."""

    def __init__(self, rank: int, score: float, caption: str, name: str,
                 thumbnail: np.ndarray | None) -> None:
        super().__init__()
        self.setObjectName("resultCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFixedWidth(THUMB_PX + 52)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(2)
        head = QLabel(f"<b>#{rank}</b> &nbsp;<span style='color:#555'>{score:.2f}</span>")
        head.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay.addWidget(head)
        self.thumb = QLabel()
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setFixedHeight(THUMB_PX)
        if thumbnail is not None:
            pix = QPixmap.fromImage(to_qimage(thumbnail)).scaled(
                THUMB_PX, THUMB_PX, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation)
            self.thumb.setPixmap(pix)
        else:
            self.thumb.setText(esc(name))
        lay.addWidget(self.thumb)
        # three lines of small text at most, so every card has the same size (the tooltip
        # holds the whole caption)
        self.caption = QLabel(esc(shorten(caption, CARD_CAPTION_CHARS)) if caption else "")
        font = self.caption.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        self.caption.setFont(font)
        self.caption.setWordWrap(True)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.caption.setFixedHeight(self.caption.fontMetrics().lineSpacing() * 3 + 2)
        lay.addWidget(self.caption)
        self.setFixedHeight(self.sizeHint().height())
        self.setToolTip(f"{name}\n{caption}\ncosine similarity {score:.3f}".strip())


def key_entry(colour: str, name: str, dashed: bool = False) -> str:
    """A legend entry inside a title: a coloured mark and the curve's name."""
    mark = "╌" if dashed else "●"
    return f"<span style='color:{colour}'>{mark}</span>{esc(name)}"


class PercentAxis(pg.AxisItem):
    """A 0-1 axis read as percentages (recall and accuracy are shares)."""

    def tickStrings(self, values: list[float], scale: float, spacing: float  # noqa: N802
                    ) -> list[str]:
        digits = 0 if spacing * scale >= 0.01 else 1
        return [f"{v * scale:.{digits}%}" for v in values]


class MatchingCurves(pg.GraphicsLayoutWidget):
    """Recall@1/5/10 both ways and zero-shot accuracy against the steps, with dashed
    chance lines: what the heat map shows for 8 pairs, measured on the monitor pairs."""

    REFRESH_MS = 250

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.series: dict[str, Series] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.chance_lines: dict[str, pg.InfiniteLine] = {}
        self._dirty: set[str] = set()
        self._keys: dict[int, list[str]] = {}  # a plot's curves and chance lines, by id
        recall_key = " ".join(key_entry(RECALL_COLOURS[k], f"@{k}") for k in RECALL_KS)
        self.t2i = self._plot(0, "Text → image recall", recall_key)
        self.i2t = self._plot(1, "Image → text recall", recall_key)
        for way, plot in (("text_to_image", self.t2i), ("image_to_text", self.i2t)):
            for k in RECALL_KS:
                self._curve(f"{way}_r{k}", plot, RECALL_COLOURS[k], f"@{k}")
            for k in RECALL_KS:
                label = "chance" if k == max(RECALL_KS) else None
                self._chance(f"{way}_chance_r{k}", plot, RECALL_COLOURS[k], label)
        self.zero_shot = self._plot(2, "Zero-shot accuracy", " ".join((
            key_entry(ZERO_SHOT, "prompts"), key_entry(KNN, "kNN"))))
        self.zero_shot.setLabel("bottom", "step")
        for plot in (self.t2i, self.i2t):  # one step axis, under the bottom plot
            plot.setXLink(self.zero_shot)
            plot.hideAxis("bottom")
        self._curve("zero_shot_accuracy", self.zero_shot, ZERO_SHOT, "zero-shot")
        self._curve("knn", self.zero_shot, KNN, "kNN (image tower)")
        self._chance("zero_shot_chance", self.zero_shot, PALETTE["baseline"],
                     "chance {value:.1%}", below=True)
        self.timer = QTimer(self)
        self.timer.setInterval(self.REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    @staticmethod
    def _dash(colour: str) -> Any:
        return pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine)

    def _plot(self, row: int, title: str, key: str) -> pg.PlotItem:
        """A plot whose title is its legend (a legend box would cover these small
        plots' curves)."""
        p = self.addPlot(row=row, col=0, axisItems={"left": PercentAxis("left")})
        self._keys[id(p)] = []
        p.setTitle(f"{title} &nbsp;{key} {key_entry('#777', 'chance', dashed=True)}",
                   color="#333", size="9pt")
        p.getAxis("left").enableAutoSIPrefix(False)
        p.getAxis("bottom").enableAutoSIPrefix(False)
        p.showGrid(x=True, y=True, alpha=0.25)
        p.setYRange(0, Y_FLOOR, padding=0.04)
        p.setMouseEnabled(x=True, y=False)
        return p

    def _curve(self, key: str, plot: pg.PlotItem, colour: str, name: str) -> None:
        self.curves[key] = plot.plot([], [], pen=pg.mkPen(colour, width=2), name=name,
                                     symbol="o", symbolSize=5, symbolBrush=colour,
                                     symbolPen=None, antialias=True)
        self.series[key] = Series()
        self._keys[id(plot)].append(key)

    def _chance(self, key: str, plot: pg.PlotItem, colour: str, label: str | None,
                below: bool = False) -> None:
        # at the right end, away from where the curves start; below the line where the
        # curves run above it (a recall chance line sits on the axis: its label above)
        anchor = (1, 0) if below else (1, 1)
        opts = {"position": 0.97, "color": colour, "movable": False,
                "anchors": [anchor, anchor]}
        line = pg.InfiniteLine(angle=0, movable=False, pen=self._dash(colour), label=label,
                               labelOpts=opts if label else None)
        line.hide()
        plot.addItem(line)
        self.chance_lines[key] = line
        self._keys[id(plot)].append(key)

    def add_report(self, e: MonitorReport) -> None:
        extra = e.extra
        for key in self.curves:
            value = e.knn_accuracy if key == "knn" else extra.get(key)
            if value is not None and math.isfinite(value):
                self.series[key].append(e.step, float(value))
                self._dirty.add(key)
        for way in ("text_to_image", "image_to_text"):
            for k in RECALL_KS:
                self._set_chance(f"{way}_chance_r{k}", extra.get(f"recall_chance_r{k}"))
        self._set_chance("zero_shot_chance", extra.get("zero_shot_chance"))

    def _set_chance(self, key: str, value: float | None) -> None:
        if value is None or not math.isfinite(value):
            return
        line = self.chance_lines[key]
        line.show()  # first: a hidden line's label does not refresh
        line.setValue(value)

    def has_data(self) -> bool:
        return any(s.n for s in self.series.values())

    def reset(self) -> None:
        """No points, no chance lines (not ``clear``: the layout widget's own ``clear``
        is an instance attribute that would win and empty the layout)."""
        for s in self.series.values():
            s.clear()
        for line in self.chance_lines.values():
            line.hide()
        self._dirty = set(self.curves)
        self.refresh()

    def refresh(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            s = self.series[key]
            self.curves[key].setData(s.x, s.y)
        if dirty:
            for plot in (self.t2i, self.i2t, self.zero_shot):
                self._fit_y(plot)

    def _fit_y(self, plot: pg.PlotItem) -> None:
        """0 to a little above the highest curve or chance line (at least
        :data:`Y_FLOOR`, at most 100 %): early recall of a few percent stays readable,
        and the chance lines stay in view."""
        top = 0.0
        for key in self._keys[id(plot)]:
            if key in self.series and self.series[key].n:
                top = max(top, float(np.nanmax(self.series[key].y)))
            elif key in self.chance_lines and self.chance_lines[key].isVisible():
                top = max(top, float(self.chance_lines[key].value()))
        plot.setYRange(0, min(1.0, max(Y_FLOOR, top * 1.2)), padding=0.04)

    def point_count(self, key: str) -> int:
        x, _ = self.curves[key].getData()
        return 0 if x is None else len(x)


class MatchingPanel(QWidget):
    """The heat map with its history, the search box and its results, the curves."""

    #: a typed sentence to rank the monitor images against (the window answers it)
    query_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.snapshots: list[PreviewSnapshot] = []
        self.monitor: MonitorSet | None = None
        self.result: QueryResult | None = None
        self.pending: str | None = None  # the query asked and not answered yet
        self._shown: PreviewSnapshot | None = None
        self._captions: list[str] = []
        self._levels = (-1.0, 1.0)  # the heat maps' colour scale (the run's range so far)
        self._ranges: dict[int, tuple[float, float]] = {}  # each snapshot's, by step

        # the heat map, its captions and its history
        self.title = QLabel(EMPTY_MAP)
        self.title.setObjectName("matchingTitle")
        self.title.setWordWrap(True)
        self.map = SimilarityMap()
        self.map.setMinimumSize(260, 240)
        self.map.hovered.connect(self.show_cell)
        self.hover = QLabel("")
        self.hover.setObjectName("matchingHover")
        self.hover.setWordWrap(True)
        self.hover.setMinimumHeight(34)
        self.hover.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.setToolTip("Scroll back through earlier snapshots of the run; at the right "
                               "end the view follows the run.")
        self.slider.valueChanged.connect(self._show_index)
        self.slider_label = QLabel("no snapshots")
        self.slider_label.setMinimumWidth(170)

        map_box = QWidget()
        ml = QVBoxLayout(map_box)
        ml.setContentsMargins(0, 0, 0, 0)
        ml.addWidget(self.map, 1)
        ml.addWidget(self.hover)
        row = QHBoxLayout()
        row.addWidget(QLabel("Snapshot"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.slider_label)
        ml.addLayout(row)

        # the search box and its ranked results
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search the monitor images, e.g. "
                                           "“a small red circle”")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        self.search_status = QLabel(SEARCH_HINT)
        self.search_status.setObjectName("searchStatus")
        self.search_status.setWordWrap(True)
        # the ranked strip: best on the left, scrolled sideways when it is wider
        self.results = QWidget()
        self.results_layout = QHBoxLayout(self.results)
        self.results_layout.setContentsMargins(0, 0, 0, 0)
        self.results_layout.setSpacing(6)
        self.results_layout.addStretch(1)
        results_scroll = QScrollArea()
        results_scroll.setWidget(self.results)
        results_scroll.setWidgetResizable(True)
        results_scroll.setFrameShape(QFrame.Shape.NoFrame)
        results_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        strip = ResultCard(1, 0.0, "x", "x", None).sizeHint().height()
        results_scroll.setFixedHeight(strip + results_scroll.horizontalScrollBar()
                                      .sizeHint().height() + 4)
        self.cards: list[ResultCard] = []

        search_box = QWidget()
        sl = QVBoxLayout(search_box)
        sl.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("<b>Search by a sentence</b>"))
        row.addWidget(self.search_box, 1)
        row.addWidget(self.search_button)
        sl.addLayout(row)
        sl.addWidget(self.search_status)
        sl.addWidget(results_scroll)

        self.curves = MatchingCurves()
        self.curves.setMinimumWidth(300)
        curves_box = QWidget()
        cl = QVBoxLayout(curves_box)
        cl.setContentsMargins(0, 0, 0, 0)
        hint = QLabel(CURVES_HINT)
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #555;")
        cl.addWidget(hint)
        cl.addWidget(self.curves, 1)

        # the heat map beside the curves, the search and its strip below both
        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(map_box)
        upper.addWidget(curves_box)
        upper.setChildrenCollapsible(False)
        upper.setSizes([620, 380])  # scaled to the width it gets
        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addWidget(upper, 1)
        lay.addWidget(search_box)

    # events ---------------------------------------------------------------------------
    def add_event(self, e: object) -> None:
        if isinstance(e, PreviewSnapshot) and e.kind == KIND:
            self.add_snapshot(e)
        elif isinstance(e, MonitorSet):
            self.monitor = e
        elif isinstance(e, MonitorReport):
            self.curves.add_report(e)
        elif isinstance(e, QueryResult):
            self.show_result(e)

    def add_snapshot(self, snap: PreviewSnapshot) -> None:
        following = not self.snapshots or self.slider.value() == len(self.snapshots) - 1
        self.snapshots = add_to_history(self.snapshots, snap)
        parsed = similarity_of(snap)
        if parsed is not None:
            self._ranges[snap.step] = (float(parsed[0].min()), float(parsed[0].max()))
        steps = {s.step for s in self.snapshots}
        self._ranges = {k: v for k, v in self._ranges.items() if k in steps}
        if self._ranges:
            self._levels = colour_levels(list(self._ranges.values()))
        follow_history(self.slider, len(self.snapshots), following)
        self._show_index(self.slider.value())

    def load_run(self, run_dir: str, rows: list[dict[str, Any]] | None = None) -> None:
        """Show a saved run: its heat maps, its monitor set (for search results) and,
        from its ``metrics.jsonl`` rows, its recall and zero-shot curves."""
        from engine.runs import RunFolder

        self.clear()
        run = RunFolder(run_dir)
        self.monitor = run.load_monitor_set()
        for snap in run.load_previews():
            if snap.kind == KIND:
                self.add_snapshot(snap)
        self.load_rows(rows if rows is not None else run.read_metrics())

    def load_rows(self, rows: list[dict[str, Any]]) -> None:
        for e in replay(rows):
            if isinstance(e, MonitorReport):
                self.curves.add_report(e)
        self.curves.refresh()

    def clear(self) -> None:
        self.snapshots.clear()
        self._levels = (-1.0, 1.0)
        self._ranges = {}
        self.monitor = None
        self.pending = None
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.blockSignals(False)
        self._show_index(0)
        self.curves.reset()
        self._set_cards([])
        self.result = None
        self.search_status.setText(SEARCH_HINT)

    # the heat map ---------------------------------------------------------------------
    def _show_index(self, i: int) -> None:
        parsed = None
        if self.snapshots:
            i = max(0, min(i, len(self.snapshots) - 1))
            snap = self.snapshots[i]
            parsed = similarity_of(snap)
        if parsed is None:
            self._shown = self.snapshots[i] if self.snapshots else None
            self._captions = []
            self.map.set_matrix(None)
            self.hover.setText("")
            self.title.setText(EMPTY_MAP if not self.snapshots else
                               f"<b>Step {self._shown.step}</b>: this snapshot holds no "
                               "similarity matrix.")
            self.slider_label.setText("no snapshots" if not self.snapshots else
                                      f"{i + 1} / {len(self.snapshots)}")
            return
        mat, captions = parsed
        self._shown, self._captions = snap, captions
        originals = snap.originals if snap.originals is not None and \
            len(snap.originals) >= mat.shape[0] else None
        self.map.set_matrix(mat, originals, captions, self._levels)
        live = " (latest)" if i == len(self.snapshots) - 1 else ""
        self.slider_label.setText(f"{i + 1} / {len(self.snapshots)} · step {snap.step}{live}")
        self.title.setText(summary(snap.step, mat) + " Outlined: each image's own caption.")
        self.hover.setText("<span style='color:#777'>Hover a cell: the image's caption, the "
                           "column's caption and their similarity.</span>")

    def hover_text(self, row: int, col: int) -> str:
        """What hovering a cell says (HTML): both captions and the similarity."""
        mat = self.map.matrix
        if mat is None or not (0 <= row < mat.shape[0] and 0 <= col < mat.shape[1]):
            return ""
        own = self._captions[row] if row < len(self._captions) else ""
        other = self._captions[col] if col < len(self._captions) else ""
        value = float(mat[row, col])
        if row == col:
            return (f"Image {row + 1} and <b>its own caption</b> “{esc(shorten(own))}”: "
                    f"similarity <b>{value:.3f}</b>")
        return (f"Image {row + 1} (its caption: “{esc(shorten(own))}”) against caption "
                f"{col + 1} “{esc(shorten(other))}”: similarity <b>{value:.3f}</b>")

    def show_cell(self, row: int, col: int) -> None:
        text = self.hover_text(row, col)
        if text:
            self.hover.setText(text)

    def current(self) -> PreviewSnapshot | None:
        return self._shown

    # search ---------------------------------------------------------------------------
    def search(self) -> None:
        """Ask for the images the typed sentence matches (the window answers)."""
        text = self.search_box.text().strip()
        if not text:
            self.show_message("Type a sentence to search for.")
            return
        self.pending = text
        self.search_status.setText(f"Searching for “{esc(text)}”…")
        self.query_requested.emit(text)

    def set_status(self, text: str) -> None:
        """A plain-text line above the results (the window says where the answer comes
        from)."""
        self.search_status.setText(esc(text))

    def show_message(self, text: str) -> None:
        """A search that could not be answered: say why, keep the last results."""
        self.pending = None
        self.search_status.setText(f"<span style='color:#b35c00'>⚠ {esc(text)}</span>")

    def show_result(self, e: QueryResult) -> None:
        if self.pending is not None and e.query.strip() != self.pending:
            return  # the answer to an earlier query, overtaken by a newer one
        self.pending = None
        if e.message:
            self.show_message(e.message)
            return
        self.result = e
        ms = self.monitor
        cards = []
        for rank, (i, score) in enumerate(zip(e.indices, e.scores, strict=False), 1):
            thumb = None
            caption, name = "", f"monitor image {i}"
            if ms is not None:
                if ms.thumbnails is not None and 0 <= i < len(ms.thumbnails):
                    thumb = ms.thumbnails[i]
                if 0 <= i < len(ms.texts):
                    caption = ms.texts[i]
                if 0 <= i < len(ms.files):
                    name = ms.files[i]
            cards.append(ResultCard(rank, float(score), caption, name, thumb))
        self._set_cards(cards)
        total = f" of {len(ms.indices)}" if ms is not None else ""
        self.search_status.setText(
            f"The {len(cards)}{total} monitor images that best match “<b>{esc(e.query)}</b>” "
            f"(model of step {e.step}; the number is the cosine similarity):")

    def _set_cards(self, cards: list[ResultCard]) -> None:
        for card in self.cards:
            self.results_layout.removeWidget(card)
            card.deleteLater()
        self.cards = cards
        for n, card in enumerate(cards):  # before the stretch at the end
            self.results_layout.insertWidget(n, card)

    def result_captions(self) -> list[str]:
        """The captions of the shown results, best first (for tests)."""
        return [c.caption.text() for c in self.cards]
