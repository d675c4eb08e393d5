"""2-D layouts of the monitor embeddings: PCA at once, UMAP refined, warm-started.

The GUI shows a PCA layout the moment an embedding snapshot arrives (milliseconds), then
replaces it with UMAP (McInnes, Healy, Melville 2018; cosine metric, since the
collapse scores and kNN read embeddings by angle). Each UMAP refresh starts from the
previous layout (``init``) with fewer epochs, so points move smoothly between snapshots
instead of jumping to an unrelated arrangement, and each layout is aligned to the
previous one (rotation/reflection/scale, Procrustes) so the picture does not spin.

Pure numpy + umap-learn, no Qt: the app runs :func:`umap_layout` in a worker process.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


#: above this many dimensions the top two components come from randomized subspace
#: iteration instead of an exact eigendecomposition of the d x d Gram matrix
EXACT_PCA_MAX_DIM = 256


def pca_layout(features: np.ndarray) -> np.ndarray:
    """First two principal components of the L2-normalised features, scaled to unit std.

    Collapsed (constant) embeddings have no variance: they land on the origin. This runs
    on the GUI thread at every snapshot, so it must take milliseconds while training
    competes for the cores: BLAS runs single-threaded here (OpenBLAS's worker threads
    spin against torch's and turned a 2 ms decomposition into a 70-170 ms stall,
    bench/gui_latency.py), and wide embeddings (DINO's 1024 prototypes, ResNet's 512
    features) use randomized subspace iteration (Halko, Martinsson, Tropp 2011), whose
    cost grows with d instead of d^3 (an exact 1024 x 1024 eigendecomposition takes
    ~150 ms on a 2-core CPU).
    """
    with single_threaded_blas():
        x = _normalise(features)
        x = x - x.mean(axis=0, keepdims=True)
        if float(np.abs(x).max(initial=0.0)) < 1e-6:  # rounding noise only: a single point
            return np.zeros((x.shape[0], 2), np.float32)
        n, d = x.shape
        if min(n, d) <= EXACT_PCA_MAX_DIM:
            y = _exact_top2(x)
        else:
            y = x @ _randomized_top2(x).astype(np.float32)
        if y.shape[1] < 2:
            y = np.hstack([y, np.zeros((n, 2 - y.shape[1]), y.dtype)])
        std = y.std(axis=0, keepdims=True)
        return (y / np.where(std > 1e-6, std, 1.0)).astype(np.float32)


def _exact_top2(x: np.ndarray) -> np.ndarray:
    """Projections on the top two components from the smaller Gram matrix."""
    n, d = x.shape
    if d <= n:
        _, vecs = np.linalg.eigh((x.T @ x).astype(np.float64))
        return x @ vecs[:, ::-1][:, :2].astype(np.float32)
    vals, vecs = np.linalg.eigh((x @ x.T).astype(np.float64))
    return vecs[:, ::-1][:, :2] * np.sqrt(np.clip(vals[::-1][:2], 0, None))


def _randomized_top2(x: np.ndarray, rank: int = 10, iters: int = 4) -> np.ndarray:
    """``(d, 2)`` top right singular vectors by subspace iteration from a fixed random
    start (so successive snapshots get the same answer for the same data)."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((x.shape[1], rank)).astype(np.float32)
    for _ in range(iters):
        q, _ = np.linalg.qr(x.T @ (x @ q))
    b = x @ q  # (n, rank): the data in the found subspace
    _, vecs = np.linalg.eigh((b.T @ b).astype(np.float64))
    return q @ vecs[:, ::-1][:, :2].astype(np.float32)


_blas_controller: Any = None


def single_threaded_blas() -> AbstractContextManager[object]:
    """A context in which numpy's BLAS uses one thread (a no-op without threadpoolctl)."""
    global _blas_controller
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return nullcontext()
    if _blas_controller is None:
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def align_to(layout: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Rotate, reflect, scale and shift ``layout`` to best match ``reference``.

    Orthogonal Procrustes (Schönemann 1966): UMAP's output is defined only up to these,
    and without alignment consecutive layouts would flip and rotate on screen.
    """
    y = np.asarray(layout, dtype=np.float64)
    yc = y - y.mean(axis=0)
    if reference is None or reference.shape != y.shape:
        return (yc / max(float(yc.std()), 1e-12)).astype(np.float32)
    r = np.asarray(reference, dtype=np.float64)
    rc = r - r.mean(axis=0)
    u, s, vt = np.linalg.svd(yc.T @ rc)
    rot = u @ vt
    norm = float((yc**2).sum())
    scale = float(s.sum()) / norm if norm > 0 else 1.0
    return (scale * yc @ rot + r.mean(axis=0)).astype(np.float32)


def exact_knn(x: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k-nearest neighbours of normalised rows (self included, first).

    For the few thousand monitor points a blocked matrix product is exact and ~50x faster
    than UMAP's approximate NN-descent, which dominated the refresh time.
    """
    n = x.shape[0]
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    for i in range(0, n, chunk):
        s = x[i : i + chunk] @ x.T
        rows = np.arange(s.shape[0])
        s[rows, rows + i] = np.inf  # each point is its own nearest neighbour, as UMAP expects
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(s, part, 1)
        order = np.argsort(-ps, axis=1)
        idx[i : i + chunk] = np.take_along_axis(part, order, 1)
        best = np.take_along_axis(ps, order, 1)
        best[:, 0] = 1.0
        dist[i : i + chunk] = np.clip(1.0 - best, 0.0, 2.0)
    return idx, dist


def umap_layout(
    features: np.ndarray,
    init: np.ndarray | None = None,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
    warm_epochs: int = 50,
    warm_learning_rate: float = 0.25,
) -> np.ndarray:
    """UMAP of ``features`` (cosine metric), warm-started from ``init`` when given.

    With ``init`` (the previous layout of the same points) UMAP runs ``warm_epochs``
    epochs from there at a quarter of its usual learning rate, refining the layout rather
    than re-making it; otherwise it starts from a spectral embedding with the default
    schedule. The result is aligned to ``init`` (or centred and scaled) and is float32
    ``(N, 2)``. Degenerate inputs (collapsed embeddings, fewer than 4 points) fall back to
    PCA, since UMAP's neighbour graph is meaningless for them.
    """
    import warnings

    import umap

    x = _normalise(features)
    n = x.shape[0]
    spread = float(np.linalg.norm(x - x.mean(axis=0), axis=1).max()) if n else 0.0
    if n < 4 or spread < 1e-6:
        return align_to(pca_layout(x), init)
    k = max(2, min(n_neighbors, n - 1))
    knn = (*exact_knn(x, k), None)
    if init is not None and init.shape == (n, 2) and np.all(np.isfinite(init)):
        # UMAP min-max scales each axis of ``init`` to [0, 10] on its own. Squeezing the
        # result back would compound refresh after refresh (the layout relaxes in the
        # stretched space) and flatten it to a line, so layouts settle to a square box.
        start = 10.0 * (init - init.min(axis=0)) / np.maximum(np.ptp(init, axis=0), 1e-12)
        reducer = umap.UMAP(n_neighbors=k, min_dist=min_dist, metric="cosine",
                            init=start.astype(np.float32), n_epochs=warm_epochs,
                            learning_rate=warm_learning_rate,
                            random_state=seed, n_jobs=1, precomputed_knn=knn)
    else:
        reducer = umap.UMAP(n_neighbors=k, min_dist=min_dist, metric="cosine",
                            random_state=seed, n_jobs=1, precomputed_knn=knn,
                            init="spectral" if n > k + 1 else "random")
    with warnings.catch_warnings():
        # no NN-descent index is kept: this layout never transforms new points
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        y = np.asarray(reducer.fit_transform(x))
    return align_to(y, init)


def kmeans_labels(
    features: np.ndarray, k: int = 10, seed: int = 0, previous: np.ndarray | None = None
) -> np.ndarray:
    """Cluster ids for colouring points when the dataset has no labels (scikit-learn).

    k-means numbers its clusters arbitrarily, so each new snapshot would repaint the same
    group in another colour; with the ``previous`` ids of the same points the clusters
    are renumbered to agree with them as far as possible (:func:`match_labels`).
    """
    from sklearn.cluster import KMeans

    x = _normalise(features)
    k = max(1, min(k, x.shape[0]))
    ids = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x).astype(np.int64)
    if previous is not None and len(previous) == len(ids):
        ids = match_labels(ids, previous)
    return ids


def match_labels(ids: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Renumber ``ids`` so that as many points as possible keep their ``previous`` id.

    The one-to-one matching of new to old ids with the largest overlap (Hungarian
    algorithm on the contingency table); new ids left without a partner take the unused
    numbers in order.
    """
    from scipy.optimize import linear_sum_assignment

    ids = np.asarray(ids, np.int64)
    previous = np.asarray(previous, np.int64)
    k_new, k_old = int(ids.max()) + 1, int(previous.max()) + 1
    overlap = np.zeros((k_new, k_old), np.int64)
    np.add.at(overlap, (ids, previous), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    mapping = np.full(k_new, -1, np.int64)
    mapping[rows] = cols
    spare = iter(sorted(set(range(max(k_new, k_old))) - set(cols.tolist())))
    for i in np.flatnonzero(mapping < 0):
        mapping[i] = next(spare)
    return mapping[ids]


def nearest_neighbours(features: np.ndarray, index: int, k: int = 10) -> np.ndarray:
    """Indices of the ``k`` points nearest to point ``index`` by cosine similarity."""
    x = _normalise(features)
    sims = x @ x[index]
    sims[index] = -np.inf
    k = max(0, min(k, x.shape[0] - 1))
    top = np.argpartition(-sims, k - 1)[:k] if k else np.array([], dtype=np.int64)
    return top[np.argsort(-sims[top])]
