"""Drive the real main window offscreen: start, watch, pause, resume, stop, refuse, close."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine import events as ev
from tests.app.conftest import FAST, set_fields


def test_window_shows_before_torch_is_imported():
    code = """
    import os, sys
    os.environ['QT_QPA_PLATFORM'] = 'offscreen'
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from app.main_window import MainWindow
    import time
    w = MainWindow()
    w.show()
    assert w.isVisible()
    print('torch loaded at show:', 'torch' in sys.modules)
    t0 = time.time()
    while not w.methods and time.time() - t0 < 120:  # then the engine loads behind it
        app.processEvents()
        time.sleep(0.01)
    print('methods:', sorted(w.methods))
    print('torch loaded after:', 'torch' in sys.modules)
    w.close()
    """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "torch loaded at show: False" in r.stdout
    assert "torch loaded after: True" in r.stdout
    assert "simclr" in r.stdout


@pytest.mark.parametrize("bf16", [True, False])
def test_the_device_line_says_when_the_cpu_trains_in_bfloat16(monkeypatch, bf16):
    """run.amp trains the CNNs in bfloat16 only on CPUs that have it in hardware: the
    bottom line of the window tells which kind of CPU this is."""
    import engine.model
    from app.main_window import _load_engine

    monkeypatch.setattr(engine.model, "pick_device", lambda _: torch.device("cpu"))
    monkeypatch.setattr(engine.model, "cpu_has_native_bf16", lambda: bf16)
    text = _load_engine()["device"]
    assert text.startswith("CPU (") and text.endswith("threads, bfloat16 for CNNs)" if bf16 else
                                                      "threads)"), text


def test_start_pause_resume_stop_from_the_window(window, qtbot):
    win = window
    set_fields(win, {**FAST, "optim.max_steps": 400})
    events: list = []
    assert win.start_run()
    win.worker.event.connect(events.append)

    # the loss plot receives points
    qtbot.waitUntil(lambda: win.plots.point_count("loss") >= 3, timeout=120_000)
    assert win.plots.baseline_knn is not None
    assert win.plots.point_count("knn") >= 1
    # the embedding view got the monitor set and a layout of the latest snapshot
    assert win.embedding.monitor is not None and win.embedding.snapshots
    assert win.embedding.shown is not None

    win.toggle_pause()
    qtbot.waitUntil(lambda: win.paused, timeout=60_000)
    assert win.pause_action.text() == "Resume"
    paused_at = win._last_step.step
    # nothing to wait for: the check is that no step arrives, so half a second must pass
    # (several steps at these settings)
    qtbot.wait(500)
    assert win._last_step.step == paused_at  # no steps while paused

    win.toggle_pause()
    qtbot.waitUntil(lambda: not win.paused and win._last_step.step > paused_at + 2,
                    timeout=60_000)

    with qtbot.waitSignal(win.run_finished, timeout=60_000) as blocker:
        win.stop_run()
    finished = blocker.args[0]
    assert isinstance(finished, ev.Finished) and finished.status == "stopped"
    qtbot.waitUntil(lambda: not win.running, timeout=30_000)
    run_dir = Path(finished.run_dir)
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert (run_dir / "config.toml").exists()
    assert win.start_action.isEnabled()


def test_invalid_hyperparameter_is_refused_with_a_message(window):
    win = window
    win.form.editors["optim.lr"].widget.setText("-1")
    assert not win.start_run()
    assert not win.running
    assert win.message_bar.isVisible()
    assert "optim.lr" in win.message_bar.text()
    assert "0 < value ≤ 10" in win.message_bar.text()
    editor = win.form.editors["optim.lr"]
    assert editor.error_label.isVisible()
    # a typo in an integer field is refused the same way
    editor.set_value(0.01)
    win.form.editors["optim.batch_size"].widget.setText("lots")
    assert not win.start_run()
    assert "optim.batch_size" in win.message_bar.text()


def test_closing_during_a_run_asks_then_stops_and_saves(window, qtbot):
    win = window
    set_fields(win, {**FAST, "optim.max_steps": 10_000})
    asked = []
    win.confirm_close = lambda: asked.append(True) or True
    assert win.start_run()
    qtbot.waitUntil(lambda: win.plots.point_count("loss") >= 2, timeout=120_000)
    with qtbot.waitSignal(win.run_finished, timeout=60_000) as blocker:
        win.close()
    assert asked == [True]
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=30_000)
    run_dir = Path(blocker.args[0].run_dir)
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert '"status": "stopped"' in (run_dir / "summary.json").read_text()


def test_closing_can_be_cancelled(window, qtbot):
    win = window
    set_fields(win, {**FAST, "optim.max_steps": 10_000})
    win.confirm_close = lambda: False
    assert win.start_run()
    qtbot.waitUntil(lambda: win.plots.point_count("loss") >= 1, timeout=120_000)
    win.close()
    assert win.isVisible() and win.running
    # the run goes on: more steps arrive after the refused close
    steps = win.plots.point_count("loss")
    qtbot.waitUntil(lambda: win.plots.point_count("loss") > steps, timeout=60_000)
    assert win.isVisible() and win.running


def test_resume_a_stopped_run_continues_its_curves(window, qtbot):
    win = window
    set_fields(win, {**FAST, "optim.max_steps": 10_000})
    assert win.start_run()
    qtbot.waitUntil(lambda: win.plots.point_count("loss") >= 4, timeout=120_000)
    with qtbot.waitSignal(win.run_finished, timeout=60_000) as blocker:
        win.stop_run()
    qtbot.waitUntil(lambda: not win.running, timeout=30_000)
    stopped_at = blocker.args[0].step
    run_dir = blocker.args[0].run_dir

    assert not win.resume_run(Path(run_dir) / "nowhere")
    assert "no checkpoint" in win.message_bar.text()

    with qtbot.waitSignal(win.run_finished, timeout=120_000) as blocker:
        assert win.resume_run(run_dir, max_steps=stopped_at + 3)
        assert win.plots.series["loss"].x[-1] == stopped_at  # the old curve is back at once
    assert blocker.args[0].status == "finished" and blocker.args[0].step == stopped_at + 3
    qtbot.waitUntil(lambda: win.plots.point_count("loss") == stopped_at + 3, timeout=5000)


def test_bad_folder_is_reported_and_the_window_survives(window, qtbot, tmp_path):
    win = window
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.doc").write_text("neither an image nor text")
    win.dataset_chooser.set_source(str(empty))
    qtbot.waitUntil(lambda: "no images found" in win.dataset_chooser.info.text(),
                    timeout=30_000)
    set_fields(win, FAST)
    with qtbot.waitSignal(win.run_finished, timeout=60_000) as blocker:
        assert win.start_run()
    assert isinstance(blocker.args[0], ev.Failed)
    qtbot.waitUntil(lambda: not win.running, timeout=30_000)
    assert "no images found" in win.message_bar.text()
    assert str(empty) in win.message_bar.text()
    assert "failed" in win.run_label.text()  # not "Starting ..." any more
    assert win.isVisible() and win.start_action.isEnabled()
    # and a good dataset still runs afterwards
    win.dataset_chooser.set_source("shapes")
    assert win.start_run()
    qtbot.waitUntil(lambda: win.plots.point_count("loss") >= 1, timeout=120_000)


def test_collapse_switch_turns_the_verdict_red_with_explanation(window, qtbot):
    """SimCLR at temperature 0.005 collapses within the first monitor steps (see
    tests/engine/test_simclr.py); the banner names the switch."""
    win = window
    set_fields(win, {**FAST, "optim.max_steps": 60, "method.temperature": 0.005})
    assert win.start_run()
    qtbot.waitUntil(lambda: win.verdict != "healthy", timeout=180_000)
    assert win.message_bar.isVisible()
    text = win.message_bar.text()
    assert "collapse" in text and "method.temperature = 0.005" in text
    assert "collapse" in win.verdict_label.text()
    # the dashboard turned with it, naming the switch
    assert win.collapse.verdict == win.verdict
    assert "method.temperature = 0.005" in win.collapse.explanation.text()
    assert win.collapse.spectra and win.collapse.numbers["uniformity"].text() != "–"


def test_command_line_presets_fill_the_form(qtbot, tmp_path):
    from app.main_window import MainWindow

    win = MainWindow(runs_dir=tmp_path, method="simclr",
                     overrides=["method.temperature=0.05", "run.amp=false", "optim.lr=-1"])
    win.show()
    qtbot.waitUntil(lambda: bool(win.methods), timeout=120_000)
    assert win.form.editors["method.temperature"].value() == 0.05
    assert win.form.editors["run.amp"].value() is False
    assert "optim.lr" in win.message_bar.text()  # refused, with the reason
    win.close()


def test_every_method_is_listed_by_family_with_its_collapse_switches_marked(window, qtbot):
    from engine.registry import available_methods

    win = window
    qtbot.waitUntil(lambda: win.data_modality == "image", timeout=60_000)
    combo = win.method_combo
    rows = [(combo.itemText(i).strip(), combo.itemData(i)) for i in range(combo.count())]
    headers = [text for text, data in rows if data is None]
    assert any("Contrastive" in h for h in headers)
    assert any("Non-contrastive" in h for h in headers)
    listed = [data for _, data in rows if data]
    # the shapes are captioned images: every image method and the image-text ones, and
    # only those (text: test_text_views; captions: test_clip_views)
    assert sorted(listed) == sorted(m.name for m in available_methods()
                                    if m.modality in ("image", "paired"))

    expected = {
        "simclr": {"method.temperature"},
        "moco": {"method.temperature"},
        "byol": {"method.base_momentum", "method.use_predictor"},
        "simsiam": {"method.stop_gradient", "method.use_predictor"},
        "vicreg": {"method.variance_weight"},
        "dino": {"method.centering", "method.sharpening"},
    }
    for name, switches in expected.items():
        combo.setCurrentIndex(combo.findData(name))
        marked = {spec.key for spec, label, _ in win.form._rows
                  if label.objectName() == "collapseLabel" and label.text().startswith("⚠")}
        assert switches <= marked, name
        assert "Collapse switches" in win.method_desc.text()


def test_method_metrics_are_plotted_for_the_chosen_method(window, qtbot):
    win = window
    win.method_combo.setCurrentIndex(win.method_combo.findData("vicreg"))
    set_fields(win, {**FAST, "optim.max_steps": 8})
    assert win.start_run()
    qtbot.waitUntil(lambda: not win.running, timeout=180_000)
    for term in ("invariance", "variance", "covariance"):
        assert win.plots.point_count(f"extra:{term}") >= 1, term


def test_divergence_pauses_explains_and_resumes_with_a_new_learning_rate(window, qtbot,
                                                                        monkeypatch):
    from engine.methods.simclr import SimCLR
    from engine.presets import load_toml

    real_step = SimCLR.training_step
    calls = {"n": 0}

    def flaky(self, images, augment, generator):
        out = real_step(self, images, augment, generator)
        calls["n"] += 1
        if calls["n"] == 7:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(SimCLR, "training_step", flaky)
    win = window
    set_fields(win, {**FAST, "optim.max_steps": 12, "monitor.checkpoint_every": 5})
    assert win.start_run()
    qtbot.waitUntil(lambda: win.paused, timeout=120_000)
    text = win.message_bar.text()
    assert "diverged" in text and "optim.lr" in text and "step 5" in text
    # only the live settings can be edited while paused
    assert win.form.isEnabled() and win.form.editors["optim.lr"].isEnabled()
    assert not win.form.editors["method.temperature"].isEnabled()
    win.form.editors["optim.lr"].set_value(-3)
    win.toggle_pause()  # refused: the value is out of range
    assert win.paused and "optim.lr" in win.message_bar.text()
    win.form.editors["optim.lr"].set_value(1e-4)
    with qtbot.waitSignal(win.run_finished, timeout=120_000) as blocker:
        win.toggle_pause()
    assert isinstance(blocker.args[0], ev.Finished) and blocker.args[0].status == "finished"
    assert load_toml(Path(win.run_dir) / "config.toml").optim.lr == 1e-4
    assert win.plots.point_count("loss") == 12  # the curves went back to step 5, then on


def test_reconstruction_method_runs_from_the_window_and_fills_the_preview(window, qtbot):
    win = window
    win.method_combo.setCurrentIndex(win.method_combo.findData("inpainting"))
    set_fields(win, {**FAST, "optim.max_steps": 12})
    assert win.start_run()
    qtbot.waitUntil(lambda: not win.running, timeout=180_000)
    panel = win.preview
    assert len(panel.snapshots) >= 2  # the step-0 snapshot and later ones
    snap = panel.current()
    assert snap is not None and snap.kind == "reconstruction"
    assert snap.outputs.shape == snap.originals.shape == snap.inputs.shape
    assert "Step 12" in panel.title.text()
    assert panel.acc_plot.isHidden()  # no pretext accuracy for reconstruction


def test_pretext_method_shows_accuracy_against_chance_in_the_window(window, qtbot):
    win = window
    win.method_combo.setCurrentIndex(win.method_combo.findData("rotation"))
    set_fields(win, {**FAST, "optim.max_steps": 10})
    assert win.start_run()
    win.tabs.setCurrentWidget(win.preview)
    qtbot.waitUntil(lambda: not win.running, timeout=180_000)
    panel = win.preview
    assert panel.chance == 0.25 and not panel.acc_plot.isHidden()
    assert len(panel.accuracy.x) == 10
    snap = panel.current()
    assert snap.kind == "classification" and len(snap.predicted) == len(snap.true) > 0
    assert "correctly predicted" in panel.title.text()


def test_a_run_reuses_the_shown_shapes_only_when_it_asks_for_the_same_set(window, qtbot):
    win = window
    chooser = win.dataset_chooser
    qtbot.waitUntil(lambda: chooser.dataset is not None, timeout=120_000)
    set_fields(win, {**FAST, "data.shapes_count": chooser.shapes_count})
    for orientation, reused in (("upright", True), ("any", False)):
        set_fields(win, {"data.shapes_orientation": orientation})
        assert win.start_run()
        assert (win.trainer._dataset is chooser.dataset) is reused, orientation
        win.stop_run()
        qtbot.waitUntil(lambda: not win.running, timeout=60_000)
