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

import shiboken6
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot


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


class QueueWorker(QObject):
    """Runs a sweep or queue (:class:`engine.sweep.Sweep`) run after run in a worker
    thread: ``event`` carries every run's events, as :class:`TrainingWorker`'s does, and
    ``entry`` (index, event) says which queued run each belongs to. Pause and resume act
    on the run under way; stop stops the queue (the current run with a checkpoint; the
    queue resumes from there).
    """

    event = Signal(object)
    entry = Signal(int, object)
    done = Signal()

    def __init__(self, sweep: Any) -> None:
        super().__init__()
        self.sweep = sweep

    @property
    def trainer(self) -> Any:
        return self.sweep.trainer

    @Slot()
    def run(self) -> None:
        lower_thread_priority()

        def on_event(index: int, e: Any) -> None:
            self.entry.emit(index, e)
            self.event.emit(e)

        try:
            self.sweep.run(on_event)
        except Exception as e:  # a broken queue folder: reported, the window survives
            from engine import events as ev

            self.event.emit(ev.Failed(message=f"The queue stopped: {e}",
                                      details=traceback.format_exc(), run_dir=None))
        finally:
            self.done.emit()

    def pause(self) -> None:
        if self.trainer is not None:
            self.trainer.request_pause()

    def resume(self) -> None:
        if self.trainer is not None:
            self.trainer.request_resume()

    def stop(self) -> None:
        self.resume()
        self.sweep.request_stop()


class FunctionWorker(QObject):
    """Runs one callable off the GUI thread; emits its result or the error text.

    The worker object stays on the GUI thread while ``run`` executes on another (see
    :func:`start_in_thread`), so every slot connected to its signals, lambdas included,
    runs on the GUI thread.
    """

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


# Each worker started by start_in_thread with its thread and owner, kept referenced by
# Python until the thread has ended: a worker or QThread collected while its thread still
# runs would be deleted under it.
_alive: dict[int, tuple[QThread, QObject, QObject]] = {}


def start_in_thread(worker: QObject, parent: QObject) -> QThread:
    """Run ``worker.run`` on a new thread; the worker object itself stays on the GUI thread.

    A slot connected without a receiver object (a lambda) runs on the thread of the object
    that emits the signal. Were the worker moved to its thread, lambdas connected to its
    signals would update widgets from that thread and crash Qt; kept on the GUI thread,
    every connection to it is queued there. Worker and thread stay referenced by Python
    until the thread has ended and are then released on the GUI thread.
    """
    thread = QThread()
    thread.started.connect(worker.run, Qt.ConnectionType.DirectConnection)
    worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
    key = id(thread)
    _alive[key] = (thread, worker, parent)

    def release() -> None:
        thread.wait()
        _alive.pop(key, None)

    thread.finished.connect(release)  # the thread object lives on the GUI thread: queued
    thread.start()
    return thread


def wait_for_threads(owner: QObject, timeout_ms: int = 30_000) -> None:
    """Let every background thread started for ``owner`` or one of its descendants finish
    (at shutdown), so none is destroyed while running."""
    for thread, _worker, parent in list(_alive.values()):
        if _descends_from(parent, owner) and thread.isRunning():
            thread.quit()
            thread.wait(timeout_ms)


def _descends_from(obj: QObject | None, ancestor: QObject) -> bool:
    while obj is not None and shiboken6.isValid(obj):
        if obj is ancestor:
            return True
        obj = obj.parent()
    return False
