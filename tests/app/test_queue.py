"""Sweeps and demos in the window: a queue of runs, its results plot, and a queue that
survives closing the window."""

from __future__ import annotations

from pathlib import Path

from app.main_window import MainWindow
from engine.demos import DEMOS, Demo, DemoRun
from tests.app.conftest import FAST, set_fields

TINY = {**FAST, "optim.max_steps": 2, "monitor.every_steps": 2, "data.shapes_count": 300,
        "monitor.monitor_size": 60}


def wait_idle(win, qtbot, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: not win.running, timeout=timeout)


def test_a_sweep_of_three_values_gives_three_runs_and_points(window, qtbot):
    win = window
    win.method_combo.setCurrentIndex(win.method_combo.findData("simclr"))
    set_fields(win, TINY)
    dlg = win.open_sweep_dialog("method.temperature")
    assert dlg is not None and "Allowed" in dlg.hint.text()
    dlg.values.setText("0.05, 0.2, 1")
    dlg.accept()
    assert win.running
    wait_idle(win, qtbot)
    panel = win.queue_panel
    assert [r.status for r in panel.result.rows] == ["finished"] * 3
    pts = panel.points_shown()
    assert len(pts) == 3
    # values spanning a factor of 20 sit on a log axis
    assert [round(x, 3) for x, _, _ in pts] == [-1.301, -0.699, 0.0]
    assert "log10" in panel.results.getAxis("bottom").labelText
    assert all(0 <= y <= 1 for _, y, _ in pts)  # kNN accuracies
    assert panel.overlay.getPlotItem().listDataItems()  # each run's kNN curve
    # a point opens its run
    panel.open_requested.emit(pts[1][2])
    assert Path(pts[1][2]).name in win.run_label.text()


def test_bad_sweep_values_are_refused_before_any_run(window, qtbot, tmp_path):
    win = window
    error = win.start_sweep("method.temperature=0.1,-3")
    assert error and "method.temperature" in error and "allowed" in error.lower()
    assert not win.running
    assert not (win.runs_dir / "sweeps").exists() or not any((win.runs_dir / "sweeps").iterdir())
    assert win.start_sweep("method.nonsense=1,2")


def test_the_queue_resumes_after_the_window_is_reopened(qtbot, tmp_path):
    runs = tmp_path / "runs"
    win = MainWindow(dataset="shapes", runs_dir=runs)
    win.show()
    qtbot.waitUntil(lambda: bool(win.methods), timeout=120_000)
    win.method_combo.setCurrentIndex(win.method_combo.findData("simclr"))
    set_fields(win, {**TINY, "optim.max_steps": 6, "monitor.every_steps": 3})
    assert win.start_sweep("method.temperature=0.1,0.2,0.5") is None
    qtbot.waitUntil(lambda: win.queue_panel.result is not None and
                    win.queue_panel.result.rows[0].status == "finished", timeout=120_000)
    win.confirm_close = lambda: True
    win.close()  # stops the queue's second run with a checkpoint, then closes
    qtbot.waitUntil(lambda: not win.running, timeout=60_000)
    win.deleteLater()

    again = MainWindow(dataset="shapes", runs_dir=runs)
    again.show()
    try:
        qtbot.waitUntil(lambda: bool(again.methods), timeout=120_000)
        panel = again.queue_panel
        assert "to go" in again.message_bar.text()
        assert panel.result is not None and panel.resume_button.isEnabled()
        statuses = [r.status for r in panel.result.rows]
        assert statuses[0] == "finished" and "pending" in statuses
        panel.resume_button.click()
        assert again.running
        wait_idle(again, qtbot)
        assert [r.status for r in panel.result.rows] == ["finished"] * 3
        assert len(panel.points_shown()) == 3
    finally:
        again.close()
        again.deleteLater()


def test_a_demo_shows_its_card_and_concludes_from_its_runs(window, qtbot, monkeypatch):
    tiny = Demo("tiny", "Tiny demo", "Two short runs.", (("Collapse", "the verdict"),),
                (DemoRun("with", "simsiam", TINY),
                 DemoRun("without", "byol", {**TINY, "method.use_predictor": False})),
                DEMOS["collapse"].conclude, next="temperature")
    monkeypatch.setitem(DEMOS, "tiny", tiny)
    win = window
    assert "collapse" in win.demo_actions  # the Demos menu
    assert win.start_demo("tiny")
    # the form follows the run under way: its method and its settings
    shown = []

    def record(_index, e):
        from PySide6.QtWidgets import QPushButton

        from engine.events import RunStarted

        if isinstance(e, RunStarted):
            editor = win.form.editors.get("method.use_predictor")
            suggest = win.form.editors["optim.lr"].findChild(QPushButton, "lrSuggest")
            shown.append((win.method_combo.currentData(), editor and editor.value(),
                          win.form.isEnabled(), suggest is not None))

    win.queue_worker.entry.connect(record)
    card = win.demo_card
    assert win.demo_dock.isVisible() and "Tiny demo" in card.title.text()
    wait_idle(win, qtbot)
    assert card.conclusion.isVisible()
    text = card.conclusion.text()
    assert "<b>with</b>" in text and "<b>without</b>" in text and "kNN accuracy went" in text
    knn = [f.final_knn for f in card.facts]
    assert all(k is not None for k in knn)
    assert f"{100 * knn[0]:.1f} %" in text  # the run's own number
    assert card.next_button.isVisible() and "temperature" in card.next_button.text().lower()
    assert shown == [("simsiam", True, False, True), ("byol", False, False, True)]
    assert not win.start_demo("no-such-demo")
    assert "no demo" in win.message_bar.text()


def test_reconstructions_of_the_queued_runs_sit_side_by_side(window, qtbot):
    win = window
    win.method_combo.setCurrentIndex(win.method_combo.findData("mae"))
    set_fields(win, {k: v for k, v in TINY.items() if k != "backbone.width"})
    assert win.start_sweep("method.mask_ratio=0.25,0.95") is None
    wait_idle(win, qtbot)
    panel = win.queue_panel
    assert [r.status for r in panel.result.rows] == ["finished"] * 2
    assert panel.previews_area.isVisibleTo(panel) and panel.previews_shown() == 2
    # a method without image previews shows none
    win.method_combo.setCurrentIndex(win.method_combo.findData("simclr"))
    set_fields(win, TINY)
    assert win.start_sweep("method.temperature=0.2") is None
    wait_idle(win, qtbot)
    assert panel.previews_shown() == 0 and not panel.previews_area.isVisibleTo(panel)


def test_a_run_not_yet_started_can_be_taken_out_of_the_queue(window, qtbot):
    win = window
    win.method_combo.setCurrentIndex(win.method_combo.findData("simclr"))
    set_fields(win, TINY)
    assert win.start_sweep("method.temperature=0.1,0.2,0.5") is None
    win.queue_panel.table.selectRow(2)
    win.queue_panel.cancel_button.click()
    wait_idle(win, qtbot)
    assert [r.status for r in win.queue_panel.result.rows] == ["finished", "finished",
                                                              "cancelled"]
    assert not win.queue_panel.resume_button.isEnabled()  # nothing left to run
