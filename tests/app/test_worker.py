"""A background worker's signals reach their slots, lambdas included, on the GUI thread."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject

from app import worker
from app.panels.dataset_chooser import DatasetChooser
from app.worker import FunctionWorker, start_in_thread


def test_function_worker_signals_run_plain_callables_on_the_gui_thread(qtbot):
    owner = QObject()
    gui = threading.get_ident()
    seen: dict[str, int] = {}
    ran_on: list[int] = []
    ok = FunctionWorker(lambda: ran_on.append(threading.get_ident()) or 42)
    ok.result.connect(lambda v: seen.setdefault("result", threading.get_ident()))
    ok.done.connect(lambda: seen.setdefault("done", threading.get_ident()))
    bad = FunctionWorker(lambda: 1 / 0)
    bad.error.connect(lambda msg, _tb: seen.setdefault("error", threading.get_ident()))
    threads = [start_in_thread(ok, owner), start_in_thread(bad, owner)]
    qtbot.waitUntil(lambda: len(seen) == 3, timeout=10_000)
    assert ran_on and ran_on[0] != gui  # the work itself ran off the GUI thread
    assert seen == {"result": gui, "done": gui, "error": gui}
    # workers and threads are released once their threads have ended
    qtbot.waitUntil(lambda: not any(t is th for t, _w, _o in worker._alive.values()
                                    for th in threads), timeout=5_000)
    assert all(t.isFinished() for t in threads)


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
