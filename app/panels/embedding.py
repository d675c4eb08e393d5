"""The live embedding view: where the monitor images sit in the encoder's space.

Every embedding snapshot is shown at once as a PCA layout, then replaced by a UMAP layout
computed in a worker process (:mod:`app.layout_worker`), warm-started from the previous
UMAP layout so points move instead of jumping. Points are coloured by label, or by
k-means cluster without labels. Hovering a point shows its thumbnail and file name;
clicking selects it and rings its nearest neighbours in embedding space. A timeline
slider replays the run's layouts; a combo switches between backbone and projector
features. The panel takes plain engine events, so it runs on its own with fake ones.

An image-text run's snapshots also hold the captions' joint-space vectors
(``EmbeddingSnapshot.text_projections``). Its projector view is then the joint space,
what the model matches: images and captions in one UMAP (2N points, images as circles
and captions as triangles in their class colours), and hovering either one of a pair
shows the image, its caption and a line joining the two. The panel switches to that view
when such a run starts, since for CLIP it is the map that matters.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.layout_worker import LayoutWorker
from app.panels.preview import to_qimage
from engine.embedding import align_to, kmeans_labels, nearest_neighbours, pca_layout
from engine.events import EmbeddingSnapshot, MonitorSet, RunStarted

FEATURES = {"backbone": "Backbone features (what kNN uses)",
            "projector": "Projector output (what the loss sees)"}
#: the projector entry's name when the snapshots hold captions too
JOINT_FEATURES = "Joint space: images ● and captions ▲ (what the loss matches)"
IMAGE_SYMBOL, CAPTION_SYMBOL = "o", "t1"  # a circle and an upward triangle
N_NEIGHBOURS = 10
HOVER_TEXT_CHARS = 300  # a hovered text sample is shortened to this
IMAGE_HINT = ("Hover a point to see its image; click to select it and ring its "
              f"{N_NEIGHBOURS} nearest neighbours.")
TEXT_HINT = ("Hover a point to read its text; click to select it and ring its "
             f"{N_NEIGHBOURS} nearest neighbours.")
JOINT_HINT = ("Circles are images, triangles their captions, in one map of the joint "
              "space. Hover either to see the pair joined by a line; click to select it "
              f"and ring its {N_NEIGHBOURS} nearest neighbours of both kinds.")


def fit_layout(layout: np.ndarray | None, n: int) -> np.ndarray | None:
    """A previous layout as the start of one of ``n`` points, or None when it cannot be.

    Image-only and image-and-caption layouts of the same monitor set differ by a factor
    of two: the captions of a map that had none start on their images, and a map that
    drops its captions keeps its images' places, so the warm start survives the switch.
    """
    if layout is None:
        return None
    m = len(layout)
    if m == n:
        return layout
    if 2 * m == n:
        return np.concatenate([layout, layout])
    if m == 2 * n:
        return layout[:n]
    return None


def hover_text(text: str, limit: int = HOVER_TEXT_CHARS, chunk: int = 40) -> str:
    """A sample's text as HTML for the side panel: whitespace collapsed, shortened,
    escaped, and a break opportunity inside words longer than ``chunk`` (identifiers,
    URLs), which a word-wrapping label cannot break and which would widen the panel."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    words = []
    for w in text.split(" "):
        words.append("\u200b".join(w[i:i + chunk] for i in range(0, len(w), chunk)) or w)
    return html.escape(" ".join(words), quote=False)


def breakable_name(name: str) -> str:
    """A file name as HTML that may wrap after its separators (``pkg/module.py:func#p1``
    is one long word to a label)."""
    out = html.escape(name, quote=False)
    for sep in ("/", ":", "#"):
        out = out.replace(sep, sep + "\u200b")
    return out


def label_colours(n: int) -> list[tuple[int, int, int]]:
    """Distinct colours: tab10, then evenly spaced hues."""
    tab10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
             "#7f7f7f", "#bcbd22", "#17becf"]
    out = [pg.mkColor(c) for c in tab10[:n]]
    out += [pg.intColor(i, hues=max(1, n - 10)) for i in range(max(0, n - 10))]
    return [c.getRgb()[:3] for c in out]


class EmbeddingPanel(QWidget):
    def __init__(self, parent: QWidget | None = None, worker: LayoutWorker | None = None
                 ) -> None:
        super().__init__(parent)
        self.monitor: MonitorSet | None = None
        self.snapshots: list[EmbeddingSnapshot] = []
        self.layouts: dict[tuple[int, str], np.ndarray] = {}  # UMAP, by (step, features)
        self.colour_ids: np.ndarray | None = None
        self.colour_names: list[str] = []
        self._kmeans_ids: np.ndarray | None = None  # the last clustering, to keep colours
        self.shown: np.ndarray | None = None  # the layout on screen
        self.shown_key: tuple[int, str] | None = None
        self.shown_is_umap = False
        self.selected: int | None = None
        self.neighbours: np.ndarray = np.array([], np.int64)
        self.worker = worker or LayoutWorker(self)
        self.worker.layout_ready.connect(self._on_layout)
        self.worker.failed.connect(self._on_layout_failed)

        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setAspectLocked(True)
        self.plot.getPlotItem().setMenuEnabled(False)
        self.legend = self.plot.getPlotItem().addLegend(offset=(10, 10))
        self.scatter = pg.ScatterPlotItem(size=6, pen=None)
        self.plot.addItem(self.scatter)
        self.ring = pg.ScatterPlotItem(size=13, brush=None, pen=pg.mkPen("k", width=1.6))
        self.plot.addItem(self.ring)
        self.star = pg.ScatterPlotItem(size=18, symbol="star", brush=pg.mkBrush("#ffdd00"),
                                       pen=pg.mkPen("k", width=1.2))
        self.plot.addItem(self.star)
        # the hovered image-caption pair: a line between them and both ends outlined
        self.pair_line = pg.PlotDataItem(pen=pg.mkPen("k", width=1.5))
        self.plot.addItem(self.pair_line)
        self.pair_ends = pg.ScatterPlotItem(size=12, brush=None, pen=pg.mkPen("k", width=1.5))
        self.plot.addItem(self.pair_ends)
        self.hovered: int | None = None
        self._joint_chosen = False  # the view went to the joint space for this run
        self._legend_names: list[str] = []
        self._legend_joint = False
        self._legend_items: list[Any] = []
        # every move of the mouse, not the scene's sigMouseMoved: pyqtgraph drops moves
        # within 1/mouseRateLimit s of the last one, and when the dropped one is where
        # the mouse stops, the info line names the point it came from
        self.plot.viewport().installEventFilter(self)
        self.scatter.sigClicked.connect(self._on_clicked)

        self.features_combo = QComboBox()
        for key, text in FEATURES.items():
            self.features_combo.addItem(text, key)
        self.features_combo.currentIndexChanged.connect(lambda *_: self._show_current())
        # the projector entry is renamed for image-text runs: keep it readable
        self.features_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.setToolTip("Replay the run's layouts; at the right end the view follows "
                               "the run.")
        self.slider.valueChanged.connect(lambda *_: self._show_current())
        self.step_label = QLabel("no embeddings yet")
        self.step_label.setMinimumWidth(230)

        self.thumb = QLabel()
        self.thumb.setFixedSize(128, 128)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setStyleSheet("border: 1px solid #ccc; background: #fafafa;")
        self.info = QLabel(IMAGE_HINT)
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.info.setMinimumWidth(200)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop)

        side = QVBoxLayout()
        side.addWidget(self.thumb)
        side.addWidget(self.info, 1)
        top = QHBoxLayout()
        top.addWidget(QLabel("Features"))
        top.addWidget(self.features_combo)
        top.addStretch(1)
        body = QHBoxLayout()
        body.addWidget(self.plot, 1)
        body.addLayout(side)
        timeline = QHBoxLayout()
        timeline.addWidget(QLabel("Timeline"))
        timeline.addWidget(self.slider, 1)
        timeline.addWidget(self.step_label)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(body, 1)
        lay.addLayout(timeline)

    # events ---------------------------------------------------------------------------
    def add_event(self, e: object) -> None:
        if isinstance(e, RunStarted) and e.start_step == 0:
            self.clear()
        elif isinstance(e, MonitorSet):
            self.set_monitor_set(e)
        elif isinstance(e, EmbeddingSnapshot):
            self.add_snapshot(e)

    def set_monitor_set(self, ms: MonitorSet) -> None:
        self.monitor = ms
        is_text = ms.thumbnails is None and bool(ms.texts)
        self.thumb.setVisible(ms.thumbnails is not None)  # text has no pictures
        self.thumb.clear()
        # text reads better in a fixed, wider column; images keep the thumbnail's
        self.info.setMinimumWidth(300 if is_text else 200)
        self.info.setMaximumWidth(300 if is_text else 16777215)
        self.info.setText(TEXT_HINT if is_text else IMAGE_HINT)
        if self._joint_chosen:
            self.info.setText(JOINT_HINT)
        self.colour_ids = None
        self._kmeans_ids = None
        if ms.labels is not None and len(ms.class_names) > 1:
            self.colour_ids = ms.labels.astype(np.int64)
            self.colour_names = list(ms.class_names)
        self._rebuild_brushes()

    def add_snapshot(self, snap: EmbeddingSnapshot) -> None:
        following = not self.snapshots or self.slider.value() == len(self.snapshots) - 1
        while self.snapshots and self.snapshots[-1].step >= snap.step:  # a resumed run
            old = self.snapshots.pop()
            for k in FEATURES:
                self.layouts.pop((old.step, k), None)
        self.snapshots.append(snap)
        if snap.text_projections is not None and not self._joint_chosen:
            self._choose_joint()
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(self.snapshots) - 1)
        self.slider.setEnabled(len(self.snapshots) > 1)
        if following:
            self.slider.setValue(len(self.snapshots) - 1)
        self.slider.blockSignals(False)
        if self.colour_ids is None and self.monitor is not None:
            self._rebuild_brushes()  # k-means colours follow the newest embedding
        if following:
            self._show_current()

    def _choose_joint(self) -> None:
        """The first snapshot with captions: name the projector view for what it is now
        and show it (once per run: the user may go back to the backbone)."""
        self._joint_chosen = True
        i = self.features_combo.findData("projector")
        self.features_combo.setItemText(i, JOINT_FEATURES)
        self.features_combo.blockSignals(True)
        self.features_combo.setCurrentIndex(i)
        self.features_combo.blockSignals(False)
        if self.monitor is not None and self.monitor.thumbnails is not None:
            self.info.setText(JOINT_HINT)

    def load_run(self, run_dir: str) -> None:
        """Show a saved run's embedding snapshots (replay with the slider)."""
        from engine.runs import RunFolder

        run = RunFolder(run_dir)
        self.clear()
        ms = run.load_monitor_set()
        if ms is not None:
            self.set_monitor_set(ms)
        for snap in run.load_embeddings():
            self.add_snapshot(snap)

    def clear(self) -> None:
        self.worker.cancel()
        self.monitor = None
        self.snapshots.clear()
        self.layouts.clear()
        self.colour_ids = None
        self.colour_names = []
        self._kmeans_ids = None
        self.shown = None
        self.shown_key = None
        self.selected = None
        self.hovered = None
        self.neighbours = np.array([], np.int64)
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.blockSignals(False)
        self.scatter.clear()
        self.ring.clear()
        self.star.clear()
        self._clear_pair()
        self._legend_joint = False
        self._set_legend([])
        if self._joint_chosen:  # the next run may have no captions
            self._joint_chosen = False
            self.features_combo.setItemText(self.features_combo.findData("projector"),
                                            FEATURES["projector"])
        self.step_label.setText("no embeddings yet")
        self.thumb.clear()

    # layouts ---------------------------------------------------------------------------
    @property
    def feature_kind(self) -> str:
        return str(self.features_combo.currentData())

    def current_snapshot(self) -> EmbeddingSnapshot | None:
        if not self.snapshots:
            return None
        return self.snapshots[max(0, min(self.slider.value(), len(self.snapshots) - 1))]

    def is_joint(self, snap: EmbeddingSnapshot | None = None) -> bool:
        """Whether the view shows images and captions together (the projector view of a
        snapshot with captions)."""
        snap = snap or self.current_snapshot()
        return (snap is not None and snap.text_projections is not None
                and self.feature_kind == "projector")

    def _features(self, snap: EmbeddingSnapshot) -> np.ndarray:
        """The points to lay out: rows 0..N-1 the images, then (joint view) row N + i
        the caption of image i."""
        if self.is_joint(snap):
            assert snap.text_projections is not None
            return np.concatenate([np.asarray(snap.projections, np.float32),
                                   np.asarray(snap.text_projections, np.float32)])
        x = snap.features if self.feature_kind == "backbone" else snap.projections
        return np.asarray(x, np.float32)

    def n_images(self) -> int:
        """Points per modality: the monitor images."""
        if self.monitor is not None:
            return len(self.monitor.indices)
        snap = self.current_snapshot()
        return 0 if snap is None else len(snap.features)

    def _nearest_umap(self, step: int) -> np.ndarray | None:
        """The UMAP layout of the closest earlier (else later) snapshot: the warm start."""
        kind = self.feature_kind
        steps = [s for (s, k) in self.layouts if k == kind]
        if not steps:
            return None
        before = [s for s in steps if s <= step]
        return self.layouts[(max(before) if before else min(steps), kind)]

    def _show_current(self) -> None:
        snap = self.current_snapshot()
        if snap is None:
            return
        key = (snap.step, self.feature_kind)
        layout = self.layouts.get(key)
        feats = self._features(snap) if layout is None else None
        if feats is not None:
            n = len(feats)
            reference = fit_layout(
                self.shown if self.shown is not None and self.shown_key is not None
                and self.shown_key[1] == key[1] else self._nearest_umap(snap.step), n)
            layout = align_to(pca_layout(feats), reference)
            self.worker.request(key, feats, fit_layout(self._nearest_umap(snap.step), n))
            self._draw(layout, key, umap=False)
        else:
            self._draw(layout, key, umap=True)

    def _on_layout(self, key: tuple[int, str], layout: np.ndarray) -> None:
        if not any(s.step == key[0] for s in self.snapshots):
            return  # from a run that was cleared meanwhile
        self.layouts[key] = layout
        snap = self.current_snapshot()
        if snap is not None and (snap.step, self.feature_kind) == key:
            self._draw(layout, key, umap=True)
        elif snap is not None and (snap.step, self.feature_kind) not in self.layouts:
            # the view moved on while this one ran: lay out what is on screen now
            feats = self._features(snap)
            self.worker.request((snap.step, self.feature_kind), feats,
                                fit_layout(self._nearest_umap(snap.step), len(feats)))

    def _on_layout_failed(self, key: Any, message: str) -> None:
        self.step_label.setText(f"UMAP failed ({message}); showing PCA")

    # drawing ---------------------------------------------------------------------------
    def _rebuild_brushes(self) -> None:
        ms = self.monitor
        if ms is None:
            return
        ids = self.colour_ids
        names = self.colour_names
        if ids is None:
            snap = self.snapshots[-1] if self.snapshots else None
            if snap is None:
                ids = np.zeros(len(ms.indices), np.int64)
                names = ["(no labels)"]
            else:
                k = min(10, max(1, len(ms.indices) // 20))
                previous = self._kmeans_ids
                if previous is not None and (len(previous) != len(ms.indices)
                                             or previous.max() >= k):
                    previous = None
                ids = kmeans_labels(np.asarray(snap.features, np.float32), k,
                                    previous=previous)  # a group keeps its colour
                self._kmeans_ids = ids
                names = [f"cluster {i + 1}" for i in range(k)]
        colours = label_colours(max(1, len(names)))
        self._brushes = [pg.mkBrush(*colours[i], 200) for i in range(len(colours))]
        self._point_brushes = [self._brushes[int(i)] for i in ids]
        self._ids = ids
        self._legend_names = names if len(names) <= 20 else []
        self._set_legend(self._legend_names)
        if self.shown is not None:
            self._draw(self.shown, self.shown_key, self.shown_is_umap)

    def _set_legend(self, names: list[str]) -> None:
        """Class colours, then (joint view) which marker is which modality."""
        self.legend.clear()
        self._legend_items = []
        colours = label_colours(len(names)) if names else []
        for name, c in zip(names, colours, strict=True):
            item = pg.ScatterPlotItem(size=8, brush=pg.mkBrush(*c), pen=None)
            self.legend.addItem(item, name)
            self._legend_items.append(item)
        if self._legend_joint:
            for symbol, name in ((IMAGE_SYMBOL, "image"), (CAPTION_SYMBOL, "caption")):
                item = pg.ScatterPlotItem(size=8, symbol=symbol, brush=pg.mkBrush("#888"),
                                          pen=None)
                self.legend.addItem(item, name)
                self._legend_items.append(item)

    def _draw(self, layout: np.ndarray, key: tuple[int, str] | None, umap: bool) -> None:
        self.shown, self.shown_key, self.shown_is_umap = layout, key, umap
        brushes: Any = getattr(self, "_point_brushes", None)
        joint = brushes is not None and len(layout) == 2 * len(brushes) and self.is_joint()
        if joint:  # images, then their captions in the same colours
            brushes = brushes + brushes
        elif brushes is None or len(brushes) != len(layout):
            brushes = pg.mkBrush(31, 119, 180, 200)
        n = len(layout) // 2
        symbols = [IMAGE_SYMBOL] * n + [CAPTION_SYMBOL] * n if joint else IMAGE_SYMBOL
        self.scatter.setData(pos=layout, brush=brushes, symbol=symbols,
                             size=[6] * n + [8] * n if joint else 6,
                             data=np.arange(len(layout)))
        if joint != self._legend_joint:
            self._legend_joint = joint
            self._set_legend(self._legend_names)
        self._draw_selection()
        self._draw_pair()
        if key is not None:
            i = self.slider.value()
            state = "UMAP" if umap else "PCA (UMAP computing…)"
            live = " · latest" if i == len(self.snapshots) - 1 else ""
            self.step_label.setText(f"step {key[0]} · {state} · {i + 1}/{len(self.snapshots)}"
                                    f"{live}")

    def _draw_selection(self) -> None:
        if (self.shown is None or self.selected is None or self.selected >= len(self.shown)
                or (len(self.neighbours) and self.neighbours.max() >= len(self.shown))):
            self.ring.clear()  # none, or chosen in a view with more points than this one
            self.star.clear()
            return
        self.star.setData(pos=self.shown[[self.selected]])
        self.ring.setData(pos=self.shown[self.neighbours] if len(self.neighbours)
                          else np.zeros((0, 2)))

    def pair_of(self, i: int) -> tuple[int, int] | None:
        """The (image, caption) points of point ``i``'s pair in the joint view, else None."""
        n = self.n_images()
        if self.shown is None or not n or len(self.shown) != 2 * n or not self.is_joint():
            return None
        j = i % n
        return j, n + j

    def _clear_pair(self) -> None:
        self.pair_line.setData([], [])
        self.pair_ends.clear()

    def _draw_pair(self) -> None:
        """The line joining the hovered point's image and caption (joint view only)."""
        pair = None if self.hovered is None else self.pair_of(self.hovered)
        if pair is None or self.shown is None:
            self._clear_pair()
            return
        ends = self.shown[list(pair)]
        self.pair_line.setData(ends[:, 0], ends[:, 1])
        self.pair_ends.setData(pos=ends, symbol=[IMAGE_SYMBOL, CAPTION_SYMBOL])

    # interaction -----------------------------------------------------------------------
    def point_at(self, scene_pos: QPointF, radius_px: float = 8.0) -> int | None:
        """The point under the mouse (within ``radius_px`` pixels), if any."""
        if self.shown is None or not len(self.shown):
            return None
        vb = self.plot.getPlotItem().getViewBox()
        p = vb.mapSceneToView(scene_pos)
        d = np.hypot(self.shown[:, 0] - p.x(), self.shown[:, 1] - p.y())
        i = int(d.argmin())
        px = vb.viewPixelSize()
        return i if d[i] <= radius_px * max(px[0], px[1]) else None

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if (event.type() == QEvent.Type.MouseMove and isinstance(event, QMouseEvent)
                and obj is self.plot.viewport()):
            self._on_mouse_moved(self.plot.mapToScene(event.position().toPoint()))
        return super().eventFilter(obj, event)

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        i = self.point_at(scene_pos)
        if i is not None:
            self.show_point(i)

    def _on_clicked(self, _item: Any, points: Any, *args: Any) -> None:
        if len(points):
            self.select(int(points[0].data()))

    def select(self, i: int) -> None:
        """Select point ``i`` and ring its nearest neighbours in the current features."""
        snap = self.current_snapshot()
        if snap is None:
            return
        self.selected = i
        self.neighbours = nearest_neighbours(self._features(snap), i, N_NEIGHBOURS)
        self._draw_selection()
        self.show_point(i)

    def _name(self, i: int) -> str:
        """A point's display name: its file, and in the joint view which half it is."""
        assert self.monitor is not None
        pair = self.pair_of(i)
        name = breakable_name(self.monitor.files[i if pair is None else pair[0]])
        return name if pair is None or i == pair[0] else f"{name} (caption)"

    def describe(self, i: int) -> str:
        ms = self.monitor
        if ms is None:
            return f"point {i}"
        pair = self.pair_of(i)
        j = i if pair is None else pair[0]  # the monitor item
        text = f"<b>{breakable_name(ms.files[j])}</b>"
        if pair is not None:
            text += "<br>caption ▲ of this image" if i == pair[1] else "<br>image ●"
        if ms.labels is not None and ms.class_names:
            text += f"<br>label: {ms.class_names[int(ms.labels[j])]}"
        elif getattr(self, "_ids", None) is not None:
            text += f"<br>k-means cluster {int(self._ids[j]) + 1}"
        if ms.thumbnails is None and j < len(ms.texts):
            text += ("<p style='font-family:monospace; background:#fafafa; color:#222'>"
                     f"{hover_text(ms.texts[j])}</p>")
        elif j < len(ms.texts):  # an image with its caption
            text += f"<p><i>“{hover_text(ms.texts[j])}”</i></p>"
        snap = self.current_snapshot()
        if pair is not None and snap is not None and snap.text_projections is not None:
            cos = float(np.dot(np.asarray(snap.projections[j], np.float32),
                               np.asarray(snap.text_projections[j], np.float32)))
            text += f"image-caption cosine: {cos:.3f}"
        return text

    def show_point(self, i: int) -> None:
        """Describe point ``i`` beside the map; in the joint view join it to its pair."""
        ms = self.monitor
        text = self.describe(i)
        self.hovered = i
        self._draw_pair()
        n = self.n_images()
        if (self.selected is not None and ms is not None and len(self.neighbours)
                and self.shown is not None and self.neighbours.max() < len(self.shown)):
            same = ""
            item = self.neighbours % n if n else self.neighbours  # captions: their image's
            if ms.labels is not None:
                agree = int((ms.labels[item] == ms.labels[self.selected % n]).sum())
                same = f" ({agree}/{len(self.neighbours)} share its label)"
            names = "<br>".join(self._name(int(j)) for j in self.neighbours[:N_NEIGHBOURS])
            text += (f"<hr>selected: {self._name(self.selected)}<br>"
                     f"nearest neighbours{same}:"
                     f"<br><small>{names}</small>")
        self.info.setText(text)
        if ms is not None and ms.thumbnails is not None:
            img: QImage = to_qimage(ms.thumbnails[i % n if n else i])
            self.thumb.setPixmap(QPixmap.fromImage(img).scaled(
                124, 124, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation))

    def shutdown(self) -> None:
        self.worker.shutdown()
