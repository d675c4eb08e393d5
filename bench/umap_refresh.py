"""UMAP refresh time for the embedding view, and what the GUI thread feels meanwhile.

1. In this process: the cold UMAP layout of N points (default 2,000, 128-d), then warm
   refreshes (``init`` = previous layout) for a sequence of snapshots whose clusters
   tighten as in training. Prints each refresh time, p50 and max.
2. In the real embedding panel: the same snapshots fed one after another to the panel,
   whose layouts run in the worker process, while a 10 ms timer on the GUI thread records
   its lateness. Prints the refresh time seen by the GUI (snapshot -> UMAP on screen) and
   the timer lateness p50 / p99 / max.

    python bench/umap_refresh.py [--points 2000] [--dim 128] [--snapshots 8]

Targets: warm refresh <= 2 s; GUI-thread lateness p99 < 50 ms. Runs offscreen unless a
display is set. The features are synthetic (Gaussian clusters whose spread shrinks from
snapshot to snapshot), so the figures do not depend on a training run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np


def snapshots(n: int, d: int, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d))
    labels = rng.integers(0, 10, n)
    noise = rng.normal(size=(n, d))
    out = []
    for i in range(count):
        spread = 2.0 * (1 - i / max(1, count)) + 0.3
        drift = 0.05 * rng.normal(size=(n, d))
        out.append((centres[labels] + spread * noise + drift).astype(np.float32))
    return out


def in_process(snaps: list[np.ndarray]) -> tuple[float, list[float]]:
    from engine.embedding import umap_layout

    t0 = time.perf_counter()
    prev = umap_layout(snaps[0])
    cold = time.perf_counter() - t0
    warm = []
    for x in snaps[1:]:
        t0 = time.perf_counter()
        prev = umap_layout(x, prev)
        warm.append(time.perf_counter() - t0)
    return cold, warm


def in_gui(snaps: list[np.ndarray]) -> tuple[list[float], np.ndarray]:
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.panels.embedding import EmbeddingPanel
    from engine.events import EmbeddingSnapshot, MonitorSet

    app = QApplication.instance() or QApplication(sys.argv[:1])
    panel = EmbeddingPanel()
    panel.resize(1100, 750)
    panel.show()
    n = snaps[0].shape[0]
    panel.add_event(MonitorSet(indices=np.arange(n), labels=np.arange(n) % 10,
                               class_names=tuple(f"class {i}" for i in range(10)),
                               files=tuple(f"img_{i}.png" for i in range(n)),
                               thumbnails=np.zeros((n, 32, 32, 3), np.uint8)))
    lateness: list[float] = []
    clock = QElapsedTimer()
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(10)
    last = [0.0]

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        if last[0]:
            lateness.append(max(0.0, now - last[0] - 10.0))
        last[0] = now

    timer.timeout.connect(tick)
    refresh: list[float] = []
    state = {"i": 0, "t0": 0.0}

    def feed() -> None:
        i = state["i"]
        if i >= len(snaps):
            app.quit()
            return
        state["t0"] = time.perf_counter()
        panel.add_snapshot(EmbeddingSnapshot(step=25 * i, features=snaps[i],
                                             projections=snaps[i]))

    def on_layout(key: object, _layout: object) -> None:
        if state["i"] > 0:  # the first is the cold start (process spawn, numba cache)
            refresh.append(time.perf_counter() - state["t0"])
        state["i"] += 1
        QTimer.singleShot(50, feed)

    panel.worker.layout_ready.connect(on_layout)
    clock.start()
    timer.start()
    QTimer.singleShot(100, feed)
    app.exec()
    timer.stop()
    panel.shutdown()
    return refresh, np.asarray(lateness)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--snapshots", type=int, default=8)
    args = p.parse_args()
    snaps = snapshots(args.points, args.dim, args.snapshots)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.points} points x {args.dim} dims, {args.snapshots} snapshots")
    cold, warm = in_process(snaps)
    print(f"in process: cold layout {cold:.2f} s; warm refresh p50 "
          f"{np.median(warm):.2f} s, max {max(warm):.2f} s (target <= 2 s)")
    refresh, late = in_gui(snaps)
    print(f"in the panel (worker process): refresh seen by the GUI p50 "
          f"{np.median(refresh):.2f} s, max {max(refresh):.2f} s")
    print(f"GUI-thread timer lateness during refreshes: p50 {np.percentile(late, 50):.1f} ms, "
          f"p99 {np.percentile(late, 99):.1f} ms, max {late.max():.1f} ms over "
          f"{len(late)} ticks (target p99 < 50 ms)")


if __name__ == "__main__":
    main()
