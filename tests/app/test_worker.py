"""Callbacks of background workers run on the GUI thread, never on the worker's thread."""

from __future__ import annotations

import threading

import shiboken6
from PySide6.QtCore import QObject

from app import worker
from app.panels.dataset_chooser import DatasetChooser
from app.worker import FunctionWorker, on_gui_thread, start_in_thread


def test_plain_callables_connected_with_on_gui_thread_run_on_the_gui_thread(qtbot):
    owner = QObject()
    gui = threading.get_ident()
    seen: dict[str, int] = {}
    ok = FunctionWorker(lambda: 42)
    on_gui_thread(ok.result, lambda v: seen.setdefault("result", threading.get_ident()), owner)
    on_gui_thread(ok.done, lambda: seen.setdefault("done", threading.get_ident()), owner)
    bad = FunctionWorker(lambda: 1 / 0)
    on_gui_thread(bad.error, lambda msg, _tb: seen.setdefault("error", threading.get_ident()),
                  owner)
    threads = [start_in_thread(ok, owner), start_in_thread(bad, owner)]
    qtbot.waitUntil(lambda: len(seen) == 3, timeout=10_000)
    assert seen == {"result": gui, "done": gui, "error": gui}
    # workers and threads are released once their threads have ended
    qtbot.waitUntil(lambda: not any(t is th for t, _w, _o in worker._alive.values()
                                    for th in threads), timeout=5_000)
    assert all(t.isFinished() for t in threads)


def test_callbacks_for_a_deleted_owner_are_skipped(qtbot):
    owner = QObject()
    calls: list[int] = []
    gate = threading.Event()
    w = FunctionWorker(lambda: gate.wait(10))
    on_gui_thread(w.result, lambda _v: calls.append(1), owner)
    thread = start_in_thread(w, QObject())
    shiboken6.delete(owner)
    gate.set()
    qtbot.waitUntil(thread.isFinished, timeout=10_000)
    qtbot.wait(50)
    assert calls == []


def test_dataset_chooser_updates_its_widgets_on_the_gui_thread(qtbot, monkeypatch):
    gui = threading.get_ident()
    threads: list[int] = []
    original = DatasetChooser._on_scanned

    def record(self, scan_id, ds):
        threads.append(threading.get_ident())
        original(self, scan_id, ds)

    monkeypatch.setattr(DatasetChooser, "_on_scanned", record)
    chooser = DatasetChooser()
    qtbot.addWidget(chooser)
    chooser.engine_ready = True
    chooser.set_source("digits", resolution=16)
    qtbot.waitUntil(lambda: chooser.dataset is not None, timeout=60_000)
    assert threads == [gui]
    assert chooser.info.text().startswith("1797 images")
