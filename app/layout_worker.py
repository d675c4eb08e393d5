"""UMAP layouts off the GUI process.

umap-learn's numba kernels hold the GIL for their whole run, so a UMAP in a thread would
freeze the window for as long as it takes. Layouts therefore run in one worker process
(spawned, lower priority); results come back to the GUI thread through a queued signal.
Only the newest request matters: one arriving while a layout is running replaces any
request still waiting, and :meth:`LayoutWorker.cancel` drops both the waiting request and
the result of the running one.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal


def _init_child() -> None:
    """Keep the layout process from competing with training and the GUI for the CPU."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    try:
        os.nice(5)
    except (AttributeError, OSError):
        pass


def _layout(features: np.ndarray, init: np.ndarray | None, seed: int) -> np.ndarray:
    from engine.embedding import umap_layout

    return umap_layout(features, init, seed=seed)


@dataclass
class LayoutRequest:
    key: Any  # who asked (the panel uses (step, feature kind))
    features: np.ndarray
    init: np.ndarray | None = None
    generation: int = 0


class LayoutWorker(QObject):
    """Computes one UMAP layout at a time in a worker process; newest request wins."""

    layout_ready = Signal(object, object)  # key, (N, 2) float32 array
    failed = Signal(object, str)  # key, message
    _finished = Signal(object, object)  # request, future (from the executor's thread)

    def __init__(self, parent: QObject | None = None, seed: int = 0) -> None:
        super().__init__(parent)
        self.seed = seed
        self._executor: ProcessPoolExecutor | None = None
        self._running: LayoutRequest | None = None
        self._waiting: LayoutRequest | None = None
        self._generation = 0
        self._finished.connect(self._on_finished)

    @property
    def busy(self) -> bool:
        return self._running is not None

    def request(self, key: Any, features: np.ndarray, init: np.ndarray | None = None) -> None:
        """Lay out ``features``; replaces a request that has not started yet."""
        req = LayoutRequest(key, np.asarray(features, np.float32), init, self._generation)
        if self._running is None:
            self._start(req)
        else:
            self._waiting = req

    def cancel(self) -> None:
        """Forget the waiting request and ignore the running one's result."""
        self._generation += 1
        self._waiting = None

    def shutdown(self) -> None:
        self.cancel()
        if self._executor is not None:
            processes = list((getattr(self._executor, "_processes", None) or {}).values())
            for p in processes:  # a layout may still be running: do not wait for it
                p.terminate()
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._running = None

    def _start(self, req: LayoutRequest) -> None:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_child)
        self._running = req
        fut = self._executor.submit(_layout, req.features, req.init, self.seed)
        fut.add_done_callback(lambda f, r=req: self._finished.emit(r, f))

    def _on_finished(self, req: LayoutRequest, fut: Future) -> None:
        self._running = None
        waiting, self._waiting = self._waiting, None
        if req.generation == self._generation and not fut.cancelled():
            exc = fut.exception()
            if exc is None:
                self.layout_ready.emit(req.key, fut.result())  # may request the next one
            else:
                self.failed.emit(req.key, f"{type(exc).__name__}: {exc}")
        if (waiting is not None and self._running is None and self._executor is not None
                and waiting.generation == self._generation):
            self._start(waiting)
