"""GUI test helpers: a real main window, offscreen, with small fast settings."""

from __future__ import annotations

import pytest

from app.main_window import MainWindow

FAST = {
    "data.shapes_count": 600,
    "optim.batch_size": 32,
    "optim.warmup_steps": 2,
    "monitor.every_steps": 5,
    "monitor.monitor_size": 100,
    "backbone.width": 8,
}


@pytest.fixture
def window(qtbot, tmp_path):
    # not qtbot.addWidget: pytest-qt would close and delete the window before this
    # fixture's teardown has stopped a run still going in the worker thread
    win = MainWindow(dataset="shapes", runs_dir=tmp_path / "runs")
    win.show()
    qtbot.waitUntil(lambda: bool(win.methods), timeout=120_000)
    yield win
    if win.running:
        win.stop_run()
        qtbot.waitUntil(lambda: not win.running, timeout=60_000)
    win.close()
    win.deleteLater()


def set_fields(win: MainWindow, values: dict) -> None:
    for key, value in values.items():
        win.form.editors[key].set_value(value)
