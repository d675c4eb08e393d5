"""The UMAP worker (a real worker process) and the embedding panel, fed fake events."""

from __future__ import annotations

import numpy as np
import pytest

from app.layout_worker import LayoutWorker
from app.panels.embedding import EmbeddingPanel
from engine.embedding import align_to, umap_layout
from engine.events import EmbeddingSnapshot, MonitorSet


def clusters(n: int = 400, d: int = 16, k: int = 4, noise: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    labels = rng.integers(0, k, n)
    return (centres[labels] + noise * rng.normal(size=(n, d))).astype(np.float32), labels


@pytest.fixture(scope="module")
def worker():
    w = LayoutWorker()
    yield w
    w.shutdown()


def test_worker_lays_out_fake_embeddings_and_warm_starts_close(qtbot, worker):
    """A warm refresh on barely changed embeddings keeps points near their places.

    Measured over data seeds 0-5 (10 clusters, 500 points): the median point moves
    0.12-0.20 of the layout's mean radius when warm-started, 0.27-0.64 after a cold
    restart aligned with Procrustes.
    """
    x, y = clusters(500, d=32, k=10)
    got: dict = {}
    worker.layout_ready.connect(lambda key, lay: got.__setitem__(key, lay))
    worker.request("first", x)
    qtbot.waitUntil(lambda: "first" in got, timeout=180_000)
    first = got["first"]
    assert first.shape == (500, 2) and np.all(np.isfinite(first))
    d = ((first[:, None] - first[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.95  # clusters stay clusters

    barely = x + 0.02 * np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    worker.request("warm", barely, first)
    qtbot.waitUntil(lambda: "warm" in got, timeout=60_000)
    spread = float(np.linalg.norm(first - first.mean(0), axis=1).mean())
    warm = np.median(np.linalg.norm(got["warm"] - first, axis=1)) / spread
    cold_layout = align_to(umap_layout(barely, seed=1), first)
    cold = np.median(np.linalg.norm(cold_layout - first, axis=1)) / spread
    assert warm < 0.3 and warm < cold, (warm, cold)


def test_new_requests_replace_waiting_ones_and_cancel_drops_results(qtbot, worker):
    x, _ = clusters(300)
    got: list = []
    worker.layout_ready.connect(lambda key, lay: got.append(key))
    worker.request("a", x)
    worker.request("b", x)  # waits behind a
    worker.request("c", x)  # replaces b
    qtbot.waitUntil(lambda: "c" in got, timeout=120_000)
    assert got == ["a", "c"]
    got.clear()
    worker.request("d", x)
    worker.cancel()  # d's result is dropped
    worker.request("e", x)  # waits behind d, then runs
    qtbot.waitUntil(lambda: "e" in got, timeout=120_000)
    assert got == ["e"]
    assert not worker.busy


class FakeWorker:
    """Synchronous stand-in: lays out with PCA at once, so panel tests need no process."""

    def __init__(self) -> None:
        from PySide6.QtCore import QObject, Signal

        class _S(QObject):
            layout_ready = Signal(object, object)
            failed = Signal(object, str)

        self._s = _S()
        self.layout_ready = self._s.layout_ready
        self.failed = self._s.failed
        self.requests: list = []
        self.features: list = []

    def request(self, key, features, init=None):
        self.requests.append((key, init))
        self.features.append(features)

    def finish(self, panel):
        from engine.embedding import align_to, pca_layout

        key, init = self.requests.pop(0)
        feats = self.features.pop(0)  # what the panel asked to lay out
        self.layout_ready.emit(key, align_to(pca_layout(feats) * 1.5, init))

    def cancel(self):
        self.requests.clear()
        self.features.clear()

    def shutdown(self):
        self.cancel()


def monitor_set(labels: np.ndarray) -> MonitorSet:
    n = len(labels)
    thumbs = np.zeros((n, 8, 8, 3), np.uint8)
    thumbs[..., 0] = (np.arange(n) % 256)[:, None, None]
    return MonitorSet(indices=np.arange(n), labels=labels, class_names=("a", "b", "c", "d"),
                      files=tuple(f"img_{i}.png" for i in range(n)), thumbnails=thumbs)


def test_panel_shows_pca_then_umap_replays_and_selects_neighbours(qtbot):
    fake = FakeWorker()
    panel = EmbeddingPanel(worker=fake)
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    x, y = clusters(200)
    panel.add_event(monitor_set(y))
    panel.add_event(EmbeddingSnapshot(step=0, features=x, projections=x[:, :8]))
    # PCA at once, UMAP requested
    assert panel.shown is not None and not panel.shown_is_umap
    assert "PCA" in panel.step_label.text() and fake.requests[0][0] == (0, "backbone")
    fake.finish(panel)
    assert panel.shown_is_umap and (0, "backbone") in panel.layouts

    panel.add_event(EmbeddingSnapshot(step=25, features=x * 2, projections=x[:, :8]))
    assert panel.current_snapshot().step == 25  # follows the run
    key, init = fake.requests[0]
    assert key == (25, "backbone") and init is panel.layouts[(0, "backbone")]  # warm start
    fake.finish(panel)
    panel.slider.setValue(0)  # replay: the stored layout is shown without a new request
    assert panel.shown_key == (0, "backbone") and panel.shown_is_umap and not fake.requests

    panel.features_combo.setCurrentIndex(1)
    assert fake.requests[-1][0] == (0, "projector")

    panel.select(5)
    assert len(panel.neighbours) == 10 and 5 not in panel.neighbours
    assert (y[panel.neighbours] == y[5]).mean() >= 0.9
    assert "img_5.png" in panel.info.text() and "share its label" in panel.info.text()
    assert panel.thumb.pixmap() is not None and not panel.thumb.pixmap().isNull()


def test_hovering_a_point_shows_its_file(qtbot):
    fake = FakeWorker()
    panel = EmbeddingPanel(worker=fake)
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    x, y = clusters(100)
    panel.add_event(monitor_set(y))
    panel.add_event(EmbeddingSnapshot(step=0, features=x, projections=x))
    vb = panel.plot.getPlotItem().getViewBox()
    vb.autoRange()
    from PySide6.QtCore import QPointF

    target = 42

    def scene_pos():
        return vb.mapViewToScene(QPointF(*panel.shown[target]))

    # once the view box has its size and range, the point's scene position finds a point
    qtbot.waitUntil(lambda: panel.point_at(scene_pos()) is not None, timeout=5_000)
    scene = scene_pos()
    panel._on_mouse_moved(scene)
    hovered = panel.point_at(scene)
    assert f"img_{hovered}.png" in panel.info.text()
    # a real mouse: from off the points (Qt sends no move to where the cursor already
    # is), then two moves in a row, the second at once (pyqtgraph's scene would drop it)
    from PySide6.QtCore import QPoint

    view = panel.plot
    qtbot.mouseMove(view.viewport(), QPoint(1, 1))
    qtbot.wait(30)
    for i in (7, target):
        qtbot.mouseMove(view.viewport(), view.mapFromScene(vb.mapViewToScene(
            QPointF(*panel.shown[i]))))
        assert f"img_{panel.point_at(vb.mapViewToScene(QPointF(*panel.shown[i])))}.png" \
            in panel.info.text()


def test_without_labels_points_are_coloured_by_kmeans(qtbot):
    panel = EmbeddingPanel(worker=FakeWorker())
    qtbot.addWidget(panel)
    x, _ = clusters(200, k=3, noise=0.05)
    ms = MonitorSet(indices=np.arange(200), labels=None, class_names=(),
                    files=tuple(f"f{i}" for i in range(200)),
                    thumbnails=np.zeros((200, 8, 8, 3), np.uint8))
    panel.add_event(ms)
    panel.add_event(EmbeddingSnapshot(step=0, features=x, projections=x))
    assert len(set(panel._ids.tolist())) > 1
    assert "cluster" in panel.describe(0)


def test_kmeans_colours_stay_with_their_groups_across_snapshots(qtbot, monkeypatch):
    """k-means numbers clusters arbitrarily; the panel keeps each group's colour."""
    import app.panels.embedding as panel_module

    panel = EmbeddingPanel(worker=FakeWorker())
    qtbot.addWidget(panel)
    x, _ = clusters(200, k=10, noise=0.05)  # the panel asks for 10 clusters
    ms = MonitorSet(indices=np.arange(200), labels=None, class_names=(),
                    files=tuple(f"f{i}" for i in range(200)),
                    thumbnails=np.zeros((200, 8, 8, 3), np.uint8))
    panel.add_event(ms)
    panel.add_event(EmbeddingSnapshot(step=0, features=x, projections=x))
    first = panel._ids.copy()
    # each clustering numbers the groups anew (here: another k-means seed per call)
    real = panel_module.kmeans_labels
    seeds = iter(range(1, 100))
    monkeypatch.setattr(panel_module, "kmeans_labels", lambda f, k, previous=None: real(
        f, k, seed=next(seeds), previous=previous))
    for step in (10, 20, 30):
        panel.add_event(EmbeddingSnapshot(step=step, features=x, projections=x))
        assert (panel._ids == first).all(), step


def paired_monitor_set(labels: np.ndarray) -> MonitorSet:
    """A CLIP run's monitor set: thumbnails and one caption per image."""
    ms = monitor_set(labels)
    from dataclasses import replace

    return replace(ms, texts=tuple(f"a shape of class {'abcd'[int(c)]}, number {i}"
                                   for i, c in enumerate(labels)))


def joint_snapshot(step: int, x: np.ndarray, seed: int = 0) -> EmbeddingSnapshot:
    """Unit image vectors and, close to each, its caption's (as a trained CLIP's)."""
    rng = np.random.default_rng(seed)
    z = x[:, :8] / np.linalg.norm(x[:, :8], axis=1, keepdims=True)
    t = z + 0.2 * rng.normal(size=z.shape)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return EmbeddingSnapshot(step=step, features=x.astype(np.float16),
                             projections=z.astype(np.float16),
                             text_projections=t.astype(np.float16))


def legend_names(panel) -> list[str]:
    return [label.text for _, label in panel.legend.items]


def hover(qtbot, panel, i: int) -> None:
    """Move the mouse over point ``i`` of the layout on screen."""
    from PySide6.QtCore import QPointF

    vb = panel.plot.getPlotItem().getViewBox()
    vb.autoRange()

    def scene_pos():
        return vb.mapViewToScene(QPointF(*panel.shown[i]))

    qtbot.waitUntil(lambda: panel.point_at(scene_pos(), radius_px=1.0) == i, timeout=5_000)
    panel._on_mouse_moved(scene_pos())


def test_fit_layout_warm_starts_across_the_doubled_point_count():
    from app.panels.embedding import fit_layout

    a = np.arange(10, dtype=np.float32).reshape(5, 2)
    assert fit_layout(a, 5) is a
    doubled = fit_layout(a, 10)
    assert doubled.shape == (10, 2) and (doubled[5:] == a).all()  # captions on their images
    assert (fit_layout(doubled, 5) == a).all()
    assert fit_layout(a, 7) is None and fit_layout(None, 5) is None


def test_a_joint_snapshot_maps_images_and_captions_together(qtbot):
    """An image-text snapshot: one map of 2N points in the joint space (images as
    circles, captions as triangles in the same class colours); hovering a caption shows
    its image, its caption and a line joining the pair."""
    from app.panels.embedding import CAPTION_SYMBOL, IMAGE_SYMBOL, JOINT_FEATURES, JOINT_HINT

    fake = FakeWorker()
    panel = EmbeddingPanel(worker=fake)
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    n = 80
    x, y = clusters(n)
    panel.add_event(paired_monitor_set(y))
    panel.add_event(joint_snapshot(0, x))
    # the joint space is chosen and named for what it is
    assert panel.feature_kind == "projector" and panel.is_joint()
    assert panel.features_combo.currentText() == JOINT_FEATURES
    assert panel.info.text() == JOINT_HINT
    (key, init), feats = fake.requests[0], fake.features[0]
    assert key == (0, "projector") and init is None and feats.shape == (2 * n, 8)
    assert panel.shown.shape == (2 * n, 2)
    fake.finish(panel)
    assert panel.shown_is_umap and panel.shown.shape == (2 * n, 2)
    symbols = list(panel.scatter.data["symbol"])
    assert symbols == [IMAGE_SYMBOL] * n + [CAPTION_SYMBOL] * n
    brushes = list(panel.scatter.data["brush"])
    assert all(brushes[i].color() == brushes[n + i].color() for i in range(n))
    assert legend_names(panel) == ["a", "b", "c", "d", "image", "caption"]

    hover(qtbot, panel, n + 7)  # the caption of image 7
    text = panel.info.text()
    assert "img_7.png" in text and "caption ▲" in text and "number 7" in text
    assert "image-caption cosine" in text
    xs, ys = panel.pair_line.getData()
    assert np.allclose(np.c_[xs, ys], panel.shown[[7, n + 7]])
    assert panel.thumb.pixmap() is not None and not panel.thumb.pixmap().isNull()
    hover(qtbot, panel, 12)  # an image: the same pair line, to its caption
    assert "image ●" in panel.info.text() and "number 12" in panel.info.text()
    xs, ys = panel.pair_line.getData()
    assert np.allclose(np.c_[xs, ys], panel.shown[[12, n + 12]])

    # the next snapshot warm-starts from the joint layout of the same 2N points
    panel.add_event(joint_snapshot(10, x * 1.1, seed=1))
    key, init = fake.requests[-1]
    assert key == (10, "projector") and init is panel.layouts[(0, "projector")]
    fake.finish(panel)
    xs, ys = panel.pair_line.getData()  # the hovered pair follows the new layout
    assert np.allclose(np.c_[xs, ys], panel.shown[[12, n + 12]])

    panel.select(n + 3)  # a caption's neighbours, among images and captions
    assert len(panel.neighbours) == 10 and n + 3 not in panel.neighbours
    assert "share its label" in panel.info.text() and "(caption)" in panel.info.text()

    # the backbone view: images only, no modality legend, no pair line
    panel.features_combo.setCurrentIndex(panel.features_combo.findData("backbone"))
    assert not panel.is_joint() and panel.shown.shape == (n, 2)
    assert legend_names(panel) == ["a", "b", "c", "d"]
    assert not panel.ring.data.size  # the selection had 2N points' indices
    xs, _ = panel.pair_line.getData()
    assert xs is None or not len(xs)
    hover(qtbot, panel, 5)
    assert "img_5.png" in panel.info.text() and "number 5" in panel.info.text()

    panel.clear()  # a next run without captions gets the plain projector entry back
    assert panel.features_combo.itemText(1) != JOINT_FEATURES


def test_a_reopened_clip_run_replays_the_joint_map(qtbot, tmp_path):
    from engine.runs import RunFolder

    x, y = clusters(40)
    run = RunFolder(tmp_path / "run")
    run.snapshots_dir.mkdir(parents=True)
    run.save_monitor_set(paired_monitor_set(y))
    for step in (0, 50):
        run.save_embedding(joint_snapshot(step, x, seed=step))
    fake = FakeWorker()
    panel = EmbeddingPanel(worker=fake)
    qtbot.addWidget(panel)
    panel.load_run(str(run.path))
    assert [s.step for s in panel.snapshots] == [0, 50]
    assert panel.is_joint() and panel.shown.shape == (80, 2)
    assert "number 3" in panel.describe(43) and "caption ▲" in panel.describe(43)


def test_an_image_run_keeps_one_marker_kind(qtbot):
    fake = FakeWorker()
    panel = EmbeddingPanel(worker=fake)
    qtbot.addWidget(panel)
    x, y = clusters(50)
    panel.add_event(monitor_set(y))
    panel.add_event(EmbeddingSnapshot(step=0, features=x, projections=x[:, :8]))
    panel.features_combo.setCurrentIndex(1)
    assert not panel.is_joint() and panel.shown.shape == (50, 2)
    assert "caption" not in legend_names(panel) and panel.pair_of(3) is None
