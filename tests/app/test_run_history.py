"""Run history from the real window: open, overlay, evaluate, export, delete."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from engine import events as ev
from engine.presets import default_config
from engine.train import Trainer
from tests.app.conftest import FAST, set_fields


def make_run(runs_dir: Path, steps: int, backbone: str = "small_cnn", **changes: object) -> str:
    cfg = default_config("simclr")
    for k, v in {**FAST, "optim.max_steps": steps, "backbone.name": backbone,
                 "optim.batch_size": 16, "monitor.every_steps": 3, **changes}.items():
        cfg.set(k, v)
    events = list(Trainer(cfg, runs_dir).run())
    return next(e.run_dir for e in events if isinstance(e, ev.Finished))


def test_open_overlay_and_delete_runs(window, qtbot, monkeypatch):
    win = window
    runs_dir = Path(win.runs_dir)
    a = make_run(runs_dir, 6)
    b = make_run(runs_dir, 9)
    win.tabs.setCurrentWidget(win.runs)  # refreshes the list
    assert {str(r.path) for r in win.runs.runs} == {a, b}
    assert win.runs.table.rowCount() == 2
    row_text = [win.runs.table.item(r, 4).text() for r in range(2)]
    assert row_text == ["finished", "finished"]

    # open a finished run: its curves, collapse scores and embeddings come back
    win.runs.select(b)
    win.runs.open_button.click()
    assert win.tabs.currentWidget() is win.plots
    assert win.plots.point_count("loss") == 9 and win.plots.point_count("knn") >= 3
    assert win.collapse.verdict is not None and win.embedding.snapshots
    assert Path(b).name in win.run_label.text() and win.evaluate.run_dir == b

    # tick both: two curves in one plot
    win.runs.set_ticked([a, b])
    assert set(win.runs.overlay_curves) == {a, b}
    xs = {p: len(c.getData()[0]) for p, c in win.runs.overlay_curves.items()}
    assert xs == {a: 6, b: 9}

    # delete asks; "No" keeps it, "Yes" removes it
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args, **kw: QMessageBox.StandardButton.No)
    assert not win.delete_run(a) and Path(a).exists()
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args, **kw: QMessageBox.StandardButton.Yes)
    assert win.delete_run(a) and not Path(a).exists()
    assert [str(r.path) for r in win.runs.runs] == [b]


def test_evaluate_tab_shows_trained_beside_random_init(window, qtbot):
    win = window
    run = make_run(Path(win.runs_dir), 6)
    win.open_run(run)
    win.evaluate.checks["fewshot"].setChecked(False)
    with qtbot.waitSignal(win.evaluate.finished, timeout=120_000):
        win.evaluate.run_button.click()
    t = win.evaluate.table
    assert t.rowCount() == 2
    names = [t.item(r, 0).text() for r in range(2)]
    assert any("kNN" in n for n in names) and any("linear" in n for n in names)
    assert all(t.item(r, 2).text().endswith("%") for r in range(2))  # the baseline column
    win.open_run(run)  # reopening shows the saved results
    assert win.evaluate.table.rowCount() == 2


def test_export_the_encoder_and_load_it_into_torchvision(window, qtbot, tmp_path):
    win = window
    # one step and the smallest monitor set: a ResNet-18 monitor pass costs seconds
    run = make_run(Path(win.runs_dir), 1, backbone="resnet18", **{"monitor.monitor_size": 20})
    out = tmp_path / "export"
    win.export_run(run, "encoder", str(out))
    qtbot.waitUntil(lambda: "Exported the encoder" in win.message_bar.text(), timeout=60_000)
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = torch.nn.Identity()
    net.fc = torch.nn.Identity()
    net.load_state_dict(torch.load(out / "encoder.pt", weights_only=True))
    assert (out / "load_encoder.py").exists()


def test_plots_are_saved_as_png_and_svg(window, qtbot, tmp_path):
    win = window
    set_fields(win, {**FAST, "optim.max_steps": 6})
    with qtbot.waitSignal(win.run_finished, timeout=120_000):
        assert win.start_run()
    qtbot.waitUntil(lambda: not win.running, timeout=30_000)
    win.tabs.setCurrentWidget(win.collapse)
    paths = win.export_plots(str(tmp_path / "plots"))
    names = {p.name for p in paths}
    assert any("spectrum_of_the_embedding" in n and n.endswith(".png") for n in names)
    assert sum(n.endswith(".svg") for n in names) == 4
    assert all(p.stat().st_size > 1000 for p in paths)


def test_reopened_dino_run_shows_rank_as_a_fraction_of_its_1024_prototypes(window, qtbot):
    """The spectrum is stored for at most 512 values; the rank's d comes from the logged
    ``dim``, so a reopened DINO run reads "of d = 1024" as it did live."""
    win = window
    cfg = default_config("dino")
    for k, v in {**FAST, "optim.max_steps": 2, "optim.batch_size": 16,
                 "monitor.every_steps": 2}.items():
        cfg.set(k, v)
    assert cfg.method.out_dim == 1024
    events = list(Trainer(cfg, win.runs_dir).run())
    live = [e for e in events if isinstance(e, ev.MonitorReport)][-1]
    assert live.dim == 1024 and len(live.spectrum) == 512
    run = next(e.run_dir for e in events if isinstance(e, ev.Finished))
    assert win.open_run(run)
    text = win.collapse.numbers["rank"].text()
    assert "of d = 1024" in text, text
    assert win.collapse.last is not None and win.collapse.last.dim == 1024


def test_runs_tab_says_interrupted_for_a_dead_owner_and_running_for_a_live_one(window):
    import json
    import os
    import socket
    import time

    from engine.runs import RunFolder

    win = window
    runs_dir = Path(win.runs_dir)
    for name, pid in (("20260101-000000_simclr_dead", 2**22 + 17),
                      ("20260101-000001_simclr_live", os.getpid())):
        run = RunFolder(runs_dir / name)
        run.path.mkdir(parents=True)
        run.write_summary({"status": "running", "method": "simclr", "dataset": "shapes",
                           "step": 3, "total_steps": 10, "started": time.time()})
        run.owner_path.write_text(json.dumps({"host": socket.gethostname(), "pid": pid,
                                              "heartbeat": time.time()}))
    win.tabs.setCurrentWidget(win.runs)
    status = {win.runs.table.item(r, 1).text(): win.runs.table.item(r, 4).text()
              for r in range(win.runs.table.rowCount())}
    assert status == {"20260101-000000_simclr_dead": "interrupted",
                      "20260101-000001_simclr_live": "running"}
