"""Background workers: training, engine loading and dataset scanning never run on the GUI thread.

Each worker lives in its own ``QThread`` and reports through queued signals, so the window
keeps painting, resizing and switching tabs while torch computes.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot


def lower_thread_priority(niceness: int = 10) -> None:
    """Make the calling thread (and the compute threads it starts) yield to the GUI.

    On a machine with few cores, torch's intra-op threads would otherwise compete with the
    GUI thread on equal terms and delay painting and input by tens of milliseconds. On
    Linux, niceness is per thread and inherited by threads created afterwards (torch's
    OpenMP team for this thread); elsewhere this is a no-op.
    """
    if not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
    except OSError:
        pass


class TrainingWorker(QObject):
    """Iterates ``Trainer.run()`` in a worker thread and emits each event.

    Pause, resume and stop go straight to the trainer's thread-safe request flags, which
    the loop checks between steps; they never wait for the worker.
    """

    event = Signal(object)
    done = Signal()

    def __init__(self, trainer: Any) -> None:
        super().__init__()
        self.trainer = trainer

    @Slot()
    def run(self) -> None:
        lower_thread_priority()
        try:
            for e in self.trainer.run():
                self.event.emit(e)
        finally:
            self.done.emit()

    def pause(self) -> None:
        self.trainer.request_pause()

    def resume(self) -> None:
        self.trainer.request_resume()

    def stop(self) -> None:
        self.trainer.request_resume()
        self.trainer.request_stop()


class FunctionWorker(QObject):
    """Runs one callable off the GUI thread; emits its result or the error text."""

    result = Signal(object)
    error = Signal(str, str)  # message, traceback
    done = Signal()

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn

    @Slot()
    def run(self) -> None:
        try:
            out = self.fn()
        except Exception as e:  # reported to the user, never crashes the window
            self.error.emit(str(e) or type(e).__name__, traceback.format_exc())
        else:
            self.result.emit(out)
        finally:
            self.done.emit()


def start_in_thread(worker: QObject, parent: QObject) -> QThread:
    """Move ``worker`` to a new thread, run its ``run`` slot, and clean up when done."""
    thread = QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.done.connect(thread.quit)
    thread.finished.connect(worker.deleteLater)
    thread.finished.connect(thread.deleteLater)
    thread.start()
    return thread


def wait_for_threads(owner: QObject, timeout_ms: int = 30_000) -> None:
    """Let every background thread owned by ``owner`` finish (at shutdown), so none is
    destroyed while running."""
    for thread in owner.findChildren(QThread):
        try:
            if thread.isRunning():
                thread.quit()
                thread.wait(timeout_ms)
        except RuntimeError:  # already deleted on the C++ side
            continue
