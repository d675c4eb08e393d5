"""2-D layouts of embeddings: PCA, warm-started UMAP, alignment, neighbours; snapshots."""

from __future__ import annotations

import numpy as np

from engine import events as ev
from engine.embedding import (
    align_to,
    exact_knn,
    kmeans_labels,
    match_labels,
    nearest_neighbours,
    pca_layout,
    umap_layout,
)
from engine.runs import RunFolder
from engine.train import Trainer
from tests.engine.conftest import small_config


def clusters(n: int = 600, d: int = 32, k: int = 4, noise: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    labels = rng.integers(0, k, n)
    return centres[labels] + noise * rng.normal(size=(n, d)), labels


def test_pca_layout_separates_clusters_and_handles_collapse():
    x, y = clusters()
    lay = pca_layout(x)
    assert lay.shape == (600, 2) and np.allclose(lay.std(0), 1, atol=1e-4)
    assert np.all(pca_layout(np.ones((50, 8))) == 0)  # complete collapse: one point


def test_align_to_undoes_rotation_reflection_and_scale():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(100, 2)).astype(np.float32)
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = 3.0 * (ref @ rot) * np.array([1, -1]) + 5.0
    assert np.allclose(align_to(moved, ref), ref, atol=1e-4)


def test_exact_knn_matches_brute_force():
    x, _ = clusters(200)
    xn = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    idx, dist = exact_knn(xn, 6, chunk=64)
    sims = xn @ xn.T
    for i in (0, 77, 199):
        assert idx[i, 0] == i and dist[i, 0] == 0
        expected = np.argsort(-sims[i])[:6]
        assert set(idx[i]) == set(expected)
        assert np.allclose(dist[i, 1:], 1 - sims[i, idx[i, 1:]], atol=1e-5)


def test_umap_layout_clusters_and_warm_start_keeps_points_close():
    x, y = clusters()
    first = umap_layout(x, seed=0)
    assert first.shape == (600, 2) and np.all(np.isfinite(first))
    # clusters: each point's nearest layout neighbours share its label
    d = ((first[:, None] - first[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.95

    rng = np.random.default_rng(5)
    barely = x + 0.02 * rng.normal(size=x.shape)
    warm = umap_layout(barely, first, seed=1)
    cold = umap_layout(barely, seed=1)
    move_warm = np.median(np.linalg.norm(warm - first, axis=1))
    move_cold = np.median(np.linalg.norm(align_to(cold, first) - first, axis=1))
    spread = float(np.linalg.norm(first - first.mean(0), axis=1).mean())
    assert move_warm < 0.3 * spread, move_warm / spread
    assert move_warm < move_cold


def test_umap_layout_of_collapsed_embeddings_falls_back_to_pca():
    lay = umap_layout(np.ones((100, 16)))
    assert lay.shape == (100, 2) and np.all(np.isfinite(lay))


def test_kmeans_and_nearest_neighbours():
    x, y = clusters(300, k=3, noise=0.1)
    km = kmeans_labels(x, k=3)
    # clusters recovered up to renaming
    assert all(len(set(km[y == c])) == 1 for c in range(3))
    nn = nearest_neighbours(x, 0, k=5)
    assert len(nn) == 5 and 0 not in nn and all(y[nn] == y[0])


def test_trainer_streams_and_saves_embedding_snapshots(tmp_path):
    events = list(Trainer(small_config("simclr", 10), tmp_path).run())
    ms = next(e for e in events if isinstance(e, ev.MonitorSet))
    snaps = [e for e in events if isinstance(e, ev.EmbeddingSnapshot)]
    assert [s.step for s in snaps] == [0, 5, 10]
    n = len(ms.indices)
    assert ms.thumbnails.shape == (n, 32, 32, 3) and ms.labels is not None
    assert len(ms.files) == n and ms.class_names
    assert snaps[-1].features.shape[0] == n and snaps[-1].projections.shape[0] == n
    assert snaps[0].features.dtype == np.float16
    assert not np.array_equal(snaps[0].features, snaps[-1].features)  # it learned something
    run = RunFolder(next(e.run_dir for e in events if isinstance(e, ev.Finished)))
    assert [s.step for s in run.load_embeddings()] == [0, 5, 10]
    loaded = run.load_monitor_set()
    assert loaded is not None and loaded.files == ms.files
    assert np.array_equal(loaded.thumbnails, ms.thumbnails)


def test_match_labels_renumbers_clusters_to_agree_with_the_previous_ones():
    previous = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    renamed = np.array([2, 2, 2, 0, 0, 1, 1, 1])  # the same grouping, numbered otherwise
    assert match_labels(renamed, previous).tolist() == previous.tolist()
    moved = np.array([1, 1, 0, 0, 0, 2, 2, 2])  # one point changed group
    assert match_labels(moved, previous).tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    # more new clusters than before: the extra one takes the unused number
    assert match_labels(np.array([0, 0, 1, 1, 2, 3]), np.array([1, 1, 0, 0, 0, 0])).tolist() \
        == [1, 1, 0, 0, 2, 3]


def test_kmeans_keeps_cluster_numbers_across_snapshots():
    x, y = clusters(300, k=4, noise=0.1)
    first = kmeans_labels(x, k=4, seed=0)
    later = x + 0.01 * np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    again = kmeans_labels(later, k=4, seed=5, previous=first)  # another seed: other numbers
    assert (again == first).mean() > 0.95


def test_wide_embeddings_get_the_same_pca_layout_from_subspace_iteration():
    """Above EXACT_PCA_MAX_DIM dimensions the layout comes from randomized subspace
    iteration; it must match the exact components (up to sign) on low-rank data."""
    from engine.embedding import EXACT_PCA_MAX_DIM, _exact_top2, _normalise

    rng = np.random.default_rng(3)
    d = 4 * EXACT_PCA_MAX_DIM
    signal = rng.standard_normal((600, 5)) * [8, 5, 3, 2, 1]
    x = (signal @ rng.standard_normal((5, d)) + rng.standard_normal((600, d))).astype(
        np.float32)
    fast = pca_layout(x)
    xn = _normalise(x)
    exact = _exact_top2(xn - xn.mean(0))
    for i in range(2):
        assert abs(np.corrcoef(fast[:, i], exact[:, i])[0, 1]) > 0.999
    assert pca_layout(x).tobytes() == fast.tobytes()  # deterministic between snapshots
