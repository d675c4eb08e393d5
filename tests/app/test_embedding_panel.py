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

    def request(self, key, features, init=None):
        self.requests.append((key, init))

    def finish(self, panel):
        from engine.embedding import align_to, pca_layout

        key, init = self.requests.pop(0)
        snap = next(s for s in panel.snapshots if s.step == key[0])
        feats = snap.features if key[1] == "backbone" else snap.projections
        self.layout_ready.emit(key, align_to(pca_layout(feats) * 1.5, init))

    def cancel(self):
        self.requests.clear()

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
